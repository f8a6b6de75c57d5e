#!/usr/bin/env bash
# Checks the deployment files, each with the tool made for it:
#   nginx       deploy/nginx.conf                   nginx -t
#   prometheus  deploy/prometheus/prometheus.yml    promtool check config (it loads the rules too)
#   alerts      deploy/prometheus/alerts.yml        promtool check rules
#   alert-tests deploy/prometheus/alerts.test.yml   promtool test rules: each alert fires, and not
#   dashboard   deploy/grafana/bandsync.json        its structure, and every PromQL expression in it
#                                                   through promtool (as recording rules)
#   grafana     deploy/grafana/provisioning/        datasource and dashboard provider agree with
#                                                   the dashboard, Prometheus and the compose mounts
#   compose     docker-compose.yml                  parsed with a YAML parser (python3 + PyYAML), asserted
#   dockerfile  Dockerfile, .dockerignore           its stages, user, health check, what the build copies
# (plus `docker compose config` when Docker Compose happens to be installed).
# Installs nginx, promtool and PyYAML from Debian's packages when missing (needs root or sudo),
# without starting their services. Prints one line per check; exits non-zero if any fails.
set -euo pipefail
cd "$(dirname "$0")/.."

WORK=$(mktemp -d)
ADDED_POLICY=""  # a policy-rc.d this script created, to remove even when interrupted
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    rm -rf "$WORK"
    if [ -n "$ADDED_POLICY" ]; then rm -f "$ADDED_POLICY" 2>/dev/null || sudo rm -f "$ADDED_POLICY" || true; fi
}
trap cleanup EXIT

failed=0
ok() { printf 'ok    %-11s %s\n' "$1" "$2"; }
skip() { printf 'skip  %-11s %s\n' "$1" "$2"; }
fail() {
    printf 'FAIL  %-11s %s\n' "$1" "$2"
    if [ -n "${3:-}" ]; then printf '%s\n' "$3" | sed 's/^/      /'; fi
    failed=1
}

# ---- tools -------------------------------------------------------------------------------------

# Debian puts nginx in /usr/sbin, which a non-root PATH may lack.
export PATH="$PATH:/usr/sbin:/sbin"

# A python3 that can import yaml: the first on PATH, else the system one (python3-yaml).
find_python() {
    local py
    for py in python3 /usr/bin/python3; do
        if command -v "$py" >/dev/null 2>&1 && "$py" -c 'import yaml' >/dev/null 2>&1; then
            command -v "$py"
            return 0
        fi
    done
    return 1
}

install_packages() {
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo=(sudo)
        else
            echo "check-deploy: missing $*; run as root, or install them: apt-get install $*" >&2
            return 1
        fi
    fi
    echo "check-deploy: installing $* from Debian's packages" >&2
    # Keep the packages' maintainer scripts from starting nginx or prometheus as services: a
    # policy-rc.d that refuses, unless the system already has one.
    local policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        ADDED_POLICY=$policy
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod 755 "$policy"
    fi
    local status=0
    "${sudo[@]}" apt-get update -qq || status=$?
    if [ "$status" -eq 0 ]; then
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
            apt-get install -y -qq --no-install-recommends "$@" >/dev/null || status=$?
    fi
    if [ -n "$ADDED_POLICY" ]; then
        "${sudo[@]}" rm -f "$ADDED_POLICY"
        ADDED_POLICY=""
    fi
    return "$status"
}

# need_promtool CHECK: true when promtool is there; otherwise CHECK fails, saying so.
need_promtool() {
    command -v promtool >/dev/null 2>&1 || { fail "$1" "promtool is not installed"; return 1; }
}

# need_python CHECK: sets py to a python3 with PyYAML; otherwise CHECK fails, saying so.
need_python() {
    py=$(find_python) || { fail "$1" "no python3 with PyYAML"; return 1; }
}

# What the checks written in Python share (they import it): check() collects what is wrong,
# finish() prints it and fails, or prints the summary; short_mounts() reads a compose service's
# volumes in either syntax.
cat >"$WORK/deploycheck.py" <<'PY'
import sys

problems = []


def check(condition, message):
    if not condition:
        problems.append(message)


def finish(summary):
    if problems:
        print("\n".join(dict.fromkeys(problems)))
        sys.exit(1)
    print(summary)


def short_mounts(service):
    out = []
    for volume in service.get("volumes") or []:
        if isinstance(volume, str):
            out.append(volume)
        else:
            ro = ":ro" if volume.get("read_only") else ""
            out.append(f"{volume.get('source')}:{volume.get('target')}{ro}")
    return out
PY
export PYTHONPATH="$WORK${PYTHONPATH:+:$PYTHONPATH}"

missing=()
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
find_python >/dev/null || missing+=(python3 python3-yaml)
if [ "${#missing[@]}" -gt 0 ]; then
    install_packages "${missing[@]}" || fail tools "could not install ${missing[*]}"
fi

# ---- nginx: nginx -t ------------------------------------------------------------------------

check_nginx() {
    if ! command -v nginx >/dev/null 2>&1; then
        fail nginx "nginx is not installed"
        return
    fi
    # The upstream hosts bandsync-1 and bandsync-2 resolve only inside the Compose network, and
    # nginx -t resolves them; test a copy in which they are loopback addresses instead. nginx -t
    # also binds the listen port (80 needs root and may be taken here), so the copy listens on a
    # free loopback port. Everything else is the file as deployed. -p/-c point at a temporary
    # prefix, -e keeps the start-up error log off the system's; -t tests and starts nothing.
    local prefix="$WORK/nginx" port py
    mkdir -p "$prefix/logs"
    py=$(find_python) || py=python3
    port=$("$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    sed -E 's/\bbandsync-1:/127.0.0.1:/g; s/\bbandsync-2:/127.0.0.2:/g' deploy/nginx.conf |
        sed -E "s/^([[:space:]]*listen[[:space:]]+)80([[:space:];])/\1127.0.0.1:${port}\2/" >"$prefix/nginx.conf"
    # nginx -t opens the pid file; keep it in the prefix too, unless the file names its own.
    local globals=()
    grep -Eq '^[[:space:]]*pid[[:space:]]' "$prefix/nginx.conf" || globals=(-g "pid $prefix/nginx.pid;")
    local out
    if ! out=$(nginx -t -q -p "$prefix/" -c "$prefix/nginx.conf" -e stderr "${globals[@]}" 2>&1); then
        fail nginx "deploy/nginx.conf fails nginx -t" "${out//$prefix\/nginx.conf/deploy/nginx.conf (test copy)}"
        return
    fi
    # What nginx -t cannot know: the proxying Socket.IO needs.
    local py
    if ! py=$(find_python); then
        fail nginx "no python3 to check what deploy/nginx.conf proxies"
        return
    fi
    if ! out=$("$py" - deploy/nginx.conf 2>&1 <<'PY'
import re
import sys

text = re.sub(r"#[^\n]*", "", open(sys.argv[1]).read())
problems = []


def block(head):
    """The body of the first `head {` block (no nested braces expected inside locations)."""
    match = re.search(re.escape(head) + r"\s*\{([^{}]*)\}", text)
    return match.group(1) if match else None


def seconds(value):
    number, unit = re.fullmatch(r"(\d+)(ms|s|m)?", value).groups()
    return int(number) * {"ms": 0.001, None: 1, "s": 1, "m": 60}[unit]


upstream = block("upstream bandsync") or ""
if not re.search(r"^\s*ip_hash\s*;", upstream, re.M):
    problems.append("upstream bandsync is not sticky (ip_hash)")
if not re.search(r"^\s*listen\s+80\s*;", text, re.M):
    problems.append("nginx does not listen on 80 (docker-compose.yml publishes ${HTTP_PORT:-8080}:80)")
if not re.search(r"map\s+\$http_upgrade\s+\$connection_upgrade", text):
    problems.append("no map $http_upgrade $connection_upgrade")
if not re.search(r"^\s*proxy_http_version\s+1\.1\s*;", text, re.M):
    problems.append("no proxy_http_version 1.1")
sio = block("location /socket.io/")
if sio is None:
    problems.append("no location /socket.io/")
else:
    for readable in ("proxy_pass http://bandsync;",
                     "proxy_set_header Upgrade $http_upgrade;",
                     "proxy_set_header Connection $connection_upgrade;",
                     "proxy_set_header Host $host;",
                     "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;",
                     "proxy_set_header X-Forwarded-Proto $scheme;",
                     "proxy_buffering off;"):
        pattern = r"\s+".join(map(re.escape, readable[:-1].split())) + r"\s*;"
        if not re.search(pattern, sio):
            problems.append("location /socket.io/ lacks " + readable)
    for name in ("proxy_read_timeout", "proxy_send_timeout"):
        found = re.search(name + r"\s+(\S+)\s*;", sio)
        # Above the 25 s Engine.IO ping interval, with room for the ping timeout.
        if not found or seconds(found.group(1)) <= 45:
            problems.append(f"location /socket.io/: {name} missing or not above 45s")
metrics = block("location = /metrics")
if metrics is None or not re.search(r"return\s+404\s*;", metrics):
    problems.append("/metrics is not answered with 404 (location = /metrics { return 404; })")
root = block("location /")
if root is None or not re.search(r"proxy_pass\s+http://bandsync\s*;", root):
    problems.append("location / does not proxy to the bandsync upstream")
if problems:
    print("\n".join(problems))
    sys.exit(1)
PY
    ); then
        fail nginx "deploy/nginx.conf passes nginx -t but does not proxy as described" "$out"
        return
    fi
    ok nginx "deploy/nginx.conf passes nginx -t ($(nginx -v 2>&1 | sed 's/.*: //')); sticky upstream, websocket upgrade, /metrics 404"
}

# ---- prometheus: promtool check config -------------------------------------------------------

check_prometheus() {
    need_promtool prometheus || return
    local out
    if out=$(promtool check config deploy/prometheus/prometheus.yml 2>&1); then
        ok prometheus "deploy/prometheus/prometheus.yml passes promtool check config ($(promtool --version 2>&1 | head -n1 | awk '{print $3}')), with its rule files"
    else
        fail prometheus "deploy/prometheus/prometheus.yml fails promtool check config" "$out"
    fi
}

# ---- alerts: promtool check rules, promtool test rules -----------------------------------------

check_alerts() {
    local f=deploy/prometheus/alerts.yml out
    need_promtool alerts || return
    if out=$(promtool check rules "$f" 2>&1); then
        ok alerts "$f passes promtool check rules ($(grep -Eo '[0-9]+ rules found' <<<"$out"))"
    else
        fail alerts "$f fails promtool check rules" "$out"
    fi
}

# Every rule in alerts.yml must be exercised by a test: promtool only runs the tests there are.
check_alert_tests() {
    local f=deploy/prometheus/alerts.test.yml out py untested
    need_promtool alert-tests || return
    if ! out=$(promtool test rules "$f" 2>&1); then
        fail alert-tests "$f fails promtool test rules" "$out"
        return
    fi
    need_python alert-tests || return
    if ! untested=$("$py" - deploy/prometheus/alerts.yml "$f" 2>&1 <<'PY'
import sys

import yaml

rules_path, tests_path = sys.argv[1:3]
alerts = {r["alert"] for g in yaml.safe_load(open(rules_path))["groups"] for r in g["rules"] if "alert" in r}
cases = [c for t in yaml.safe_load(open(tests_path)).get("tests", []) for c in t.get("alert_rule_test", [])]
missing = []
for name in sorted(alerts):
    mine = [c for c in cases if c.get("alertname") == name]
    if not any(c.get("exp_alerts") for c in mine):
        missing.append(f"{name}: no case where it fires")
    if not any(not c.get("exp_alerts") for c in mine):
        missing.append(f"{name}: no case where it must not fire")
print("\n".join(missing) if missing else len(alerts))
sys.exit(1 if missing else 0)
PY
    ); then
        fail alert-tests "$f passes, but does not test every alert both ways" "$untested"
        return
    fi
    ok alert-tests "$f passes promtool test rules: $untested alerts, each firing and not firing"
}

# ---- dashboard: structure, and every PromQL expression through promtool --------------------------

# No Grafana server can be installed from the package registries this runs with (Debian has no
# grafana package), so the dashboard cannot be rendered here; its structure is checked instead, and
# each query is parsed by promtool: the expressions are written as recording rules, with Grafana's
# variables replaced by values of the right kind, and `promtool check rules` parses them all.
check_dashboard() {
    local f=deploy/grafana/bandsync.json py out rules="$WORK/dashboard-rules.yml"
    need_python dashboard || return
    need_promtool dashboard || return
    local status=0
    out=$("$py" - "$f" deploy/grafana/provisioning/datasources/prometheus.yml "$rules" 2>&1 <<'PY'
import json
import re
import sys

import yaml
from deploycheck import check, finish

dashboard_path, datasource_path, rules_path = sys.argv[1:4]


with open(dashboard_path) as f:
    d = json.load(f)
uid = yaml.safe_load(open(datasource_path))["datasources"][0]["uid"]

check(d.get("uid") == "bandsync", f"uid is {d.get('uid')!r}, expected 'bandsync'")
check(isinstance(d.get("schemaVersion"), int) and 36 <= d["schemaVersion"] <= 41,
      f"schemaVersion {d.get('schemaVersion')!r} is not one Grafana 10-11 writes (36-41)")
check(d.get("title"), "no title")

# The template variables: $instance, from the build info of every scraped instance.
variables = {v.get("name"): v for v in d.get("templating", {}).get("list", [])}
inst = variables.get("instance", {})
query = inst.get("query")
query = query.get("query") if isinstance(query, dict) else query
check(inst.get("type") == "query" and query == "label_values(bandsync_build_info, instance)",
      "no $instance variable with the query label_values(bandsync_build_info, instance)")
check(inst.get("includeAll") and inst.get("multi"), "$instance does not allow All and several values")
check((inst.get("datasource") or {}).get("uid") == uid, f"$instance does not use datasource uid {uid!r}")

# Grafana's variables, replaced by something of the same kind for parsing: durations where a range
# goes, a regex where a label matcher's value goes (the dashboard's own variables only appear there).
builtin = {"__rate_interval": "5m", "__interval": "1m", "__range": "1h", "__range_s": "3600",
           "__range_ms": "3600000", "__interval_ms": "60000"}
VAR = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute(expr, where):
    def one(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtin:
            return builtin[name]
        if name in variables:
            return ".*"
        problems.append(f"{where}: unknown variable ${name}")
        return m.group(0)
    return VAR.sub(one, expr)


# Every expression, as (where, expr): the panels' targets and the variables' queries.
exprs = []
for v in variables.values():
    q = v.get("query")
    q = q.get("query") if isinstance(q, dict) else q
    if v.get("type") != "query" or not q:
        continue
    m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q) or re.fullmatch(r"\s*query_result\((.*)\)\s*", q)
    check(m, f"variable ${v['name']}: query {q!r} is neither label_values(...) nor query_result(...)")
    if m:
        exprs.append((f"variable ${v['name']}", m.group(1)))

ids = set()
cells = {}
panels = []
for p in d.get("panels", []):
    panels.append(p)
    panels.extend(p.get("panels", []))  # a collapsed row keeps its panels inside
for p in panels:
    where = f"panel {p.get('id')} {p.get('title')!r}"
    check(isinstance(p.get("id"), int) and p["id"] not in ids, f"{where}: id missing or not unique")
    ids.add(p.get("id"))
    g = p.get("gridPos", {})
    if not all(isinstance(g.get(k), int) for k in ("x", "y", "w", "h")):
        problems.append(f"{where}: no gridPos")
        continue
    check(g["x"] >= 0 and g["x"] + g["w"] <= 24, f"{where}: wider than the 24-column grid")
    for x in range(g["x"], g["x"] + g["w"]):
        for y in range(g["y"], g["y"] + g["h"]):
            if (x, y) in cells:
                problems.append(f"{where}: overlaps {cells[(x, y)]}")
                break
            cells[(x, y)] = where
        else:
            continue
        break
    if p.get("type") == "row":
        continue
    check((p.get("datasource") or {}).get("uid") == uid, f"{where}: datasource is not uid {uid!r}")
    targets = p.get("targets") or []
    check(targets, f"{where}: no queries")
    refs = [t.get("refId") for t in targets]
    check(len(set(refs)) == len(refs), f"{where}: refIds {refs} are not unique")
    for t in targets:
        twhere = f"{where} query {t.get('refId')}"
        check((t.get("datasource") or {}).get("uid", uid) == uid, f"{twhere}: datasource is not uid {uid!r}")
        expr = t.get("expr", "")
        check(expr.strip(), f"{twhere}: empty expr")
        # Range windows follow the scrape interval and the zoom ($__rate_interval), or the whole
        # time range ($__range); a fixed window is wrong at some zoom.
        for window in re.findall(r"\[([^\]]*)\]", expr):
            check(window in ("$__rate_interval", "$__range"), f"{twhere}: range window [{window}] is not [$__rate_interval] or [$__range]")
        # Every bandsync series is filtered by the $instance picker.
        for name, matchers in re.findall(r"\b((?:bandsync|process)_\w+|up)\s*(\{[^}]*\})?", expr):
            check('instance=~"$instance"' in (matchers or ""), f"{twhere}: {name} is not filtered by instance=~\"$instance\"")
        exprs.append((twhere, expr))

check(exprs, "no expressions found")
groups = [{"name": "dashboard", "rules": []}]
for i, (where, expr) in enumerate(exprs):
    groups[0]["rules"].append({"record": f"dashboard:expr_{i}", "expr": substitute(expr, where)})
with open(rules_path, "w") as f:
    yaml.safe_dump({"groups": groups}, f, sort_keys=False, width=1000)
    # Which panel each rule came from, for promtool's messages.
    for i, (where, _) in enumerate(exprs):
        f.write(f"# dashboard:expr_{i} = {where}\n")

finish(f"{len([p for p in panels if p.get('type') != 'row'])} panels, {len(exprs)} expressions")
PY
    ) || status=$?
    # The expressions are parsed even when the structure is wrong, so one run reports both.
    local parsed="" parse_status=0
    if [ -s "$rules" ]; then
        parsed=$(promtool check rules "$rules" 2>&1) || parse_status=$?
    fi
    if [ "$status" -ne 0 ] || [ "$parse_status" -ne 0 ]; then
        local details=""
        [ "$status" -ne 0 ] && details="$out"
        if [ "$parse_status" -ne 0 ]; then
            # Name the panel of each expression promtool refused.
            local names
            names=$(grep -Eo 'dashboard:expr_[0-9]+' <<<"$parsed" | sort -u | sed 's/.*/^# & = /')
            details="${details:+$details
}promtool check rules (the dashboard's expressions as recording rules):
$parsed
$(grep -f <(printf '%s\n' "$names") "$rules" || true)"
        fi
        fail dashboard "$f is not as described" "$details"
        return
    fi
    ok dashboard "$f: $out parse with promtool; \$instance, datasource uid, \$__rate_interval windows, grid"
}

# ---- grafana: provisioning agrees with the dashboard, Prometheus and the compose mounts --------

check_grafana() {
    local py out
    need_python grafana || return
    if out=$("$py" - 2>&1 <<'PY'
import posixpath

import yaml
from deploycheck import check, finish, short_mounts


datasources = yaml.safe_load(open("deploy/grafana/provisioning/datasources/prometheus.yml")).get("datasources") or []
providers = yaml.safe_load(open("deploy/grafana/provisioning/dashboards/bandsync.yml")).get("providers") or []
prometheus = yaml.safe_load(open("deploy/prometheus/prometheus.yml"))
compose = yaml.safe_load(open("docker-compose.yml"))

check(len(datasources) == 1, f"{len(datasources)} datasources provisioned, expected 1")
ds = datasources[0] if datasources else {}
check(ds.get("type") == "prometheus", "the datasource is not of type prometheus")
check(ds.get("url") == "http://prometheus:9090", f"the datasource url is {ds.get('url')!r}, not the compose Prometheus")
check(ds.get("uid") == "prometheus", f"the datasource uid is {ds.get('uid')!r}, expected 'prometheus'")
check(ds.get("access") == "proxy", "the datasource is not accessed through Grafana (access: proxy)")
# $__rate_interval is derived from this: it must be the scrape interval.
scrape = prometheus.get("scrape_configs", [{}])[0].get("scrape_interval") or prometheus.get("global", {}).get("scrape_interval")
check((ds.get("jsonData") or {}).get("timeInterval") == scrape,
      f"the datasource's timeInterval is {(ds.get('jsonData') or {}).get('timeInterval')!r}, Prometheus scrapes every {scrape}")

check(len(providers) == 1, f"{len(providers)} dashboard providers, expected 1")
provider = providers[0] if providers else {}
path = (provider.get("options") or {}).get("path")
check(provider.get("type") == "file" and path, "the dashboard provider is not a file provider with a path")
mounts = short_mounts(compose.get("services", {}).get("grafana", {}))
dashboard_mount = [m for m in mounts if m.startswith("./deploy/grafana/bandsync.json:")]
check(dashboard_mount and posixpath.dirname(dashboard_mount[0].split(":")[1]) == path,
      f"docker-compose.yml does not mount deploy/grafana/bandsync.json in the provider's folder {path}")
check(provider.get("allowUiUpdates") is False, "the provider lets the UI save over the provisioned dashboard")

finish(f"datasource uid {ds.get('uid')} -> {ds.get('url')}, dashboards from {path}")
PY
    ); then
        ok grafana "deploy/grafana/provisioning: $out"
    else
        fail grafana "deploy/grafana/provisioning does not match the dashboard, Prometheus or the compose mounts" "$out"
    fi
}

# ---- compose: parse and assert -----------------------------------------------------------------

check_compose() {
    local py out
    need_python compose || return
    if out=$("$py" - docker-compose.yml deploy/prometheus/prometheus.yml deploy/nginx.conf 2>&1 <<'PY'
import re
import sys

import yaml
from deploycheck import check, finish, short_mounts

compose_path, prometheus_path, nginx_path = sys.argv[1:4]


def env_of(service):
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def published(service):
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            host = port.get("published")
            ip = port.get("host_ip")
            out.append(f"{ip + ':' if ip else ''}{host}:{port.get('target')}")
        else:
            out.append(str(port))
    return out


with open(compose_path) as f:
    doc = yaml.safe_load(f)

check(isinstance(doc, dict), "the file is not a YAML mapping")
check("version" not in doc, "has a top-level version: key (the Compose spec has none)")
services = doc.get("services") or {}
expected = {"redis", "bandsync-1", "bandsync-2", "nginx", "prometheus", "grafana"}
check(set(services) == expected, f"services are {sorted(services)}, expected {sorted(expected)}")
password = "${REDIS_PASSWORD:-change-me}"

redis = services.get("redis", {})
check(str(redis.get("image", "")).startswith("redis:7"), "redis: image is not redis:7-*")
command = redis.get("command", [])
command = command.split() if isinstance(command, str) else [str(c) for c in command]
joined = " ".join(command)
check(f"--requirepass {password}" in joined, "redis: command lacks --requirepass " + password)
check("--appendonly yes" in joined, "redis: command lacks --appendonly yes")
check(any(m.split(":")[1:2] == ["/data"] for m in short_mounts(redis)), "redis: no volume on /data")
health = redis.get("healthcheck", {}).get("test", [])
health = health if isinstance(health, str) else " ".join(map(str, health))
check("redis-cli" in health and ("-a" in health or "REDISCLI_AUTH" in health), "redis: health check does not use redis-cli with the password")
check(env_of(redis).get("REDIS_PASSWORD") == password or "REDISCLI_AUTH" in env_of(redis) or password in health,
      "redis: the health check's password is not the server's")

server_ids = []
for name in ("bandsync-1", "bandsync-2"):
    service = services.get(name, {})
    build = service.get("build")
    context = build if isinstance(build, str) else (build or {}).get("context")
    dockerfile = "Dockerfile" if isinstance(build, str) else (build or {}).get("dockerfile", "Dockerfile")
    check(context in (".", "./") and dockerfile == "Dockerfile", f"{name}: not built from ./Dockerfile")
    env = env_of(service)
    check(env.get("REDIS_HOST") == "redis", f"{name}: REDIS_HOST is not redis")
    check(env.get("REDIS_PASSWORD") == password, f"{name}: REDIS_PASSWORD is not {password}")
    check(env.get("LOG_FORMAT") == "json", f"{name}: LOG_FORMAT is not json")
    check(bool(env.get("SERVER_ID")) and "$" not in env.get("SERVER_ID", ""), f"{name}: no fixed SERVER_ID")
    server_ids.append(env.get("SERVER_ID"))
    depends = service.get("depends_on") or {}
    condition = depends.get("redis", {}).get("condition") if isinstance(depends, dict) else None
    check(condition == "service_healthy", f"{name}: does not wait for redis to be healthy")
    check(service.get("restart") == "unless-stopped", f"{name}: restart is not unless-stopped")
    check(not service.get("ports"), f"{name}: publishes ports (only nginx should)")
check(len(set(server_ids)) == 2, f"SERVER_IDs are not distinct: {server_ids}")

nginx = services.get("nginx", {})
check(str(nginx.get("image", "")).startswith("nginx:1.27-alpine"), "nginx: image is not nginx:1.27-alpine")
check("${HTTP_PORT:-8080}:80" in published(nginx), "nginx: does not publish ${HTTP_PORT:-8080}:80")
check("./deploy/nginx.conf:/etc/nginx/nginx.conf:ro" in short_mounts(nginx),
      "nginx: deploy/nginx.conf is not mounted read-only on /etc/nginx/nginx.conf")

prometheus = services.get("prometheus", {})
check(str(prometheus.get("image", "")).startswith("prom/prometheus"), "prometheus: image is not prom/prometheus")
check("./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in short_mounts(prometheus),
      "prometheus: deploy/prometheus/prometheus.yml is not mounted read-only on /etc/prometheus/prometheus.yml")
check("127.0.0.1:9090:9090" in published(prometheus), "prometheus: 9090 is not published on 127.0.0.1 only")
# The rule files prometheus.yml names, resolved as Prometheus does (beside the config file), are
# mounted from deploy/prometheus/.
with open(prometheus_path) as f:
    prom = yaml.safe_load(f)
rule_files = prom.get("rule_files") or []
check("alerts.yml" in rule_files, "prometheus.yml does not load alerts.yml (rule_files)")
for rule_file in rule_files:
    target = rule_file if rule_file.startswith("/") else "/etc/prometheus/" + rule_file
    check(f"./deploy/prometheus/{rule_file}:{target}:ro" in short_mounts(prometheus),
          f"prometheus: rule file {rule_file} is not mounted read-only from deploy/prometheus/ on {target}")

grafana = services.get("grafana", {})
image = str(grafana.get("image", ""))
check(re.fullmatch(r"grafana/grafana-oss:11\.\d+\.\d+", image), f"grafana: image {image!r} is not a pinned grafana/grafana-oss:11.x.y")
genv = env_of(grafana)
check(genv.get("GF_AUTH_ANONYMOUS_ENABLED") == "true", "grafana: GF_AUTH_ANONYMOUS_ENABLED is not true")
check(genv.get("GF_AUTH_ANONYMOUS_ORG_ROLE") == "Viewer", "grafana: anonymous users are not Viewers")
check(re.fullmatch(r"\$\{GRAFANA_ADMIN_PASSWORD:\?[^}]+\}", genv.get("GF_SECURITY_ADMIN_PASSWORD") or ""),
      "grafana: GF_SECURITY_ADMIN_PASSWORD is not the required ${GRAFANA_ADMIN_PASSWORD:?...} from the environment")
gmounts = short_mounts(grafana)
check("./deploy/grafana/provisioning:/etc/grafana/provisioning:ro" in gmounts,
      "grafana: deploy/grafana/provisioning is not mounted read-only on /etc/grafana/provisioning")
check(any(m.startswith("./deploy/grafana/bandsync.json:") and m.endswith(":ro") for m in gmounts),
      "grafana: deploy/grafana/bandsync.json is not mounted read-only")
check(any(m.split(":")[1:2] == ["/var/lib/grafana"] for m in gmounts), "grafana: no volume on /var/lib/grafana")
check(published(grafana) == ["127.0.0.1:3000:3000"], f"grafana: publishes {published(grafana)}, expected 127.0.0.1:3000:3000 only")
check(grafana.get("restart") == "unless-stopped", "grafana: restart is not unless-stopped")

# The other files name the same instances.
instances = {f"{name}:3001" for name in ("bandsync-1", "bandsync-2")}
targets = {t for job in prom.get("scrape_configs", []) for sc in job.get("static_configs", []) for t in sc.get("targets", [])}
check(targets == instances, f"prometheus.yml scrapes {sorted(targets)}, expected {sorted(instances)}")
with open(nginx_path) as f:
    upstream = set(re.findall(r"^\s*server\s+([\w.-]+:\d+)\s*;", f.read(), re.M))
check(upstream == instances, f"nginx.conf upstream is {sorted(upstream)}, expected {sorted(instances)}")

finish(f"{len(services)} services")
PY
    ); then
        ok compose "docker-compose.yml: $out, redis password, distinct SERVER_IDs, nginx :80, prometheus config and rules, grafana"
    else
        fail compose "docker-compose.yml is not as described" "$out"
    fi
}

# ---- dockerfile: stages, user, health check, build inputs --------------------------------------

check_dockerfile() {
    local f=Dockerfile problems=()
    if [ ! -f "$f" ]; then
        fail dockerfile "no Dockerfile"
        return
    fi
    # Instructions, with continuation lines joined and comments dropped.
    local text
    text=$(sed -e '/^[[:space:]]*#/d' "$f" | sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta')
    has() { grep -Eiq "$1" <<<"$text"; }

    has '^FROM[[:space:]]+rust:[0-9.]+-slim-bookworm[[:space:]]+AS[[:space:]]+builder' ||
        problems+=("no builder stage FROM rust:<version>-slim-bookworm AS builder")
    local rust_tag need_rust
    rust_tag=$(grep -Eio '^FROM[[:space:]]+rust:[0-9.]+' <<<"$text" | head -n1 | sed 's/.*rust://')
    need_rust=$(sed -nE 's/^rust-version[[:space:]]*=[[:space:]]*"([0-9.]+)".*/\1/p' Cargo.toml)
    if [ -n "$rust_tag" ] && [ -n "$need_rust" ] &&
        [ "$(printf '%s\n%s\n' "$need_rust" "$rust_tag" | sort -V | head -n1)" != "$need_rust" ]; then
        problems+=("builder Rust $rust_tag is older than Cargo.toml's rust-version $need_rust")
    fi
    has '^FROM[[:space:]]+debian:bookworm-slim' || problems+=("no runtime stage FROM debian:bookworm-slim")
    [ "$(grep -Eic '^FROM[[:space:]]' <<<"$text")" -ge 2 ] || problems+=("not multi-stage")
    has 'cargo build --release --locked' || problems+=("no cargo build --release --locked")
    # Dependencies are cached: Cargo.toml and Cargo.lock are copied before the sources.
    local manifest_line src_line
    manifest_line=$(grep -Ein '^COPY[[:space:]].*Cargo\.lock' <<<"$text" | head -n1 | cut -d: -f1)
    src_line=$(grep -Ein '^COPY[[:space:]]+src' <<<"$text" | head -n1 | cut -d: -f1)
    [ -n "$manifest_line" ] && [ -n "$src_line" ] && [ "$manifest_line" -lt "$src_line" ] ||
        problems+=("Cargo.toml/Cargo.lock are not copied (and built) before src/")
    # Files the crate embeds from outside src/ (include_bytes!/include_str!) must be copied too.
    local inc dir rel path
    while IFS=: read -r inc rel; do
        [ -n "$inc" ] || continue
        dir=$(dirname "$inc")
        path=$(realpath -m --relative-to=. "$dir/$rel")
        case "$path" in src/*) continue ;; esac
        local copied=0 top
        # shellcheck disable=SC2013 # the words of the COPY lines are wanted
        for top in $(grep -Ei '^COPY[[:space:]]' <<<"$text" | grep -vi -- '--from' | awk '{for (i = 2; i < NF; i++) print $i}'); do
            top=${top#./}
            top=${top%/}
            case "$path" in "$top" | "$top"/*) copied=1 ;; esac
        done
        [ "$copied" -eq 1 ] || problems+=("$inc embeds $path, which the Dockerfile does not copy")
    done < <(grep -rEo 'include_(bytes|str)!\("[^"]+"\)' src --include='*.rs' |
        sed -E 's/^([^:]+):include_(bytes|str)!\("([^"]+)"\)$/\1:\3/')
    local user
    user=$(grep -Ei '^USER[[:space:]]' <<<"$text" | tail -n1 | awk '{print $2}')
    case "${user%%:*}" in
        "" ) problems+=("no USER: the server would run as root") ;;
        root | 0) problems+=("USER is root") ;;
    esac
    has 'useradd.*--uid[[:space:]]+10001' || problems+=("no bandsync user with the fixed uid 10001")
    has '^HEALTHCHECK[[:space:]].*CMD[[:space:]].*curl.*/livez' || problems+=("no HEALTHCHECK calling /livez")
    has '^EXPOSE[[:space:]]+3001' || problems+=("no EXPOSE 3001")
    has '^ENV[[:space:]].*HOST=0\.0\.0\.0' && has '^ENV[[:space:]].*PORT=3001' || problems+=("no ENV HOST=0.0.0.0 PORT=3001")
    has '^STOPSIGNAL[[:space:]]+SIGTERM' || problems+=("no STOPSIGNAL SIGTERM")
    has '^COPY[[:space:]]+--from=builder[[:space:]].*[[:space:]]/usr/local/bin/bandsync-server' ||
        problems+=("the binary is not copied to /usr/local/bin/bandsync-server")
    has '^ENTRYPOINT[[:space:]]+\[' || problems+=("no exec-form ENTRYPOINT (the server must be PID 1 to get SIGTERM)")
    local pattern
    for pattern in target node_modules .git; do
        grep -Eq "^(\*\*/)?${pattern//./\\.}/?$" .dockerignore 2>/dev/null || problems+=(".dockerignore lacks $pattern")
    done
    if [ "${#problems[@]}" -eq 0 ]; then
        ok dockerfile "Dockerfile: builder rust:$rust_tag and debian:bookworm-slim, USER $user, HEALTHCHECK, .dockerignore"
    else
        fail dockerfile "Dockerfile is not as described" "$(printf '%s\n' "${problems[@]}")"
    fi
}

# ---- docker compose config, where Compose is installed ------------------------------------------

# Compose's own schema check, when Compose v2 (docker compose) or v1 (docker-compose) is already
# installed; not installed here, the YAML assertions above stand in for it.
check_compose_cli() {
    local compose=() out
    if command -v docker >/dev/null 2>&1 && docker compose version >/dev/null 2>&1; then
        compose=(docker compose)
    elif command -v docker-compose >/dev/null 2>&1; then
        compose=(docker-compose)
    else
        skip compose-cli "docker compose is not installed (the YAML checks above still ran)"
        return
    fi
    # GRAFANA_ADMIN_PASSWORD is required by the file; any value does for checking it.
    if out=$(GRAFANA_ADMIN_PASSWORD="${GRAFANA_ADMIN_PASSWORD:-check-deploy}" "${compose[@]}" -f docker-compose.yml config -q 2>&1); then
        ok compose-cli "${compose[*]} config accepts docker-compose.yml"
    else
        fail compose-cli "${compose[*]} config rejects docker-compose.yml" "$out"
    fi
}

check_nginx
check_prometheus
check_alerts
check_alert_tests
check_dashboard
check_grafana
check_compose
check_dockerfile
check_compose_cli

exit "$failed"
