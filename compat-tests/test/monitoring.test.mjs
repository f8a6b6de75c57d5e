// The Grafana dashboard (deploy/grafana/bandsync.json) and the alert rules
// (deploy/prometheus/alerts.yml) against a live /metrics: every metric they query must be there.
//
// A panel or an alert on a name the server does not export shows "No data" or never fires, and
// nothing else tells: promtool (scripts/check-deploy.sh) checks that the PromQL parses, not that
// the server exports what it names. So this file runs the release binary with Redis, a short
// session with the real socket.io-client (a legacy member who joins, plays and sets the tempo, an
// enhanced member who joins the same session, reports a clock:sync round trip and leaves), then
// scrapes /metrics once and checks what the two files name:
//   - metric names: identifiers starting with bandsync_ or process_ (a histogram's _bucket, _sum
//     and _count are its family's samples); Prometheus's own series (up, ALERTS) are not the
//     server's and are left out;
//   - labels: every label a selector matches on or an aggregation groups by must be on the
//     metric's samples, and every literal value matched (vocabulary="legacy", or each word of
//     vocabulary=~"legacy|enhanced") must be one of its values. instance, job and service are
//     Prometheus's target labels and are left out.
// Nothing in the session provokes a refusal, a rate limit, a Redis error or a dropped connection:
// a series the dashboard graphs must exist from start-up (at 0), not from its first event, or its
// panel is empty until then and rate() misses that first event.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT, sleep } from "../lib/server.mjs";
import { startCluster } from "../lib/cluster.mjs";
import { connect, closeAll, sid, join, syncState } from "../lib/client.mjs";
import { ack, ackOk, enhancedJoin } from "../lib/enhanced.mjs";
import { scrapeMetrics } from "../lib/prometheus.mjs";

const DASHBOARD = path.join(REPO_ROOT, "deploy", "grafana", "bandsync.json");
const ALERTS = path.join(REPO_ROOT, "deploy", "prometheus", "alerts.yml");

/** Labels Prometheus attaches to every scraped series: never in the exposition itself. */
const TARGET_LABELS = new Set(["instance", "job", "service"]);
const HISTOGRAM_SUFFIX = /_(bucket|sum|count)$/;

// ---- the expressions ------------------------------------------------------------------------

/** The dashboard's panels, those inside collapsed rows included. */
const allPanels = (dashboard) => (dashboard.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);

/** Every PromQL expression of the dashboard, as {where, expr}: panel queries and query variables. */
function dashboardExprs(dashboard) {
  const out = [];
  const panels = allPanels(dashboard);
  for (const p of panels) {
    for (const t of p.targets ?? []) {
      if (t.expr) out.push({ where: `dashboard panel "${p.title}" (${t.refId})`, expr: t.expr });
    }
  }
  for (const v of dashboard.templating?.list ?? []) {
    const q = typeof v.query === "object" ? v.query?.query : v.query;
    const m = /^\s*(?:label_values|query_result)\((.*?)(?:,\s*\w+)?\)\s*$/.exec(q ?? "");
    if (v.type === "query" && m) out.push({ where: `dashboard variable $${v.name}`, expr: m[1] });
  }
  return out;
}

/**
 * Every rule's `expr` in a Prometheus rules file, as {where, expr}: inline (plain or quoted) or a
 * block scalar (`expr: |` followed by more-indented lines). The rules files are plain YAML of one
 * shape; a YAML library is not worth a dependency for it, and the caller checks the count.
 */
function ruleExprs(text) {
  const lines = text.split("\n");
  const indentOf = (line) => line.length - line.trimStart().length;
  const out = [];
  let name = "?";
  lines.forEach((line, i) => {
    const named = /^\s*-?\s*(?:alert|record):\s*(\S+)/.exec(line);
    if (named) name = named[1];
    const m = /^(\s*)(-\s*)?expr:\s*(.*)$/.exec(line);
    if (!m) return;
    const indent = m[1].length + (m[2]?.length ?? 0);
    let expr = m[3].trim();
    if (/^[|>][-+]?$/.test(expr)) {
      const body = [];
      for (let j = i + 1; j < lines.length && (lines[j].trim() === "" || indentOf(lines[j]) > indent); j++) {
        body.push(lines[j].trim());
      }
      expr = body.join(" ").trim();
    } else if (/^'.*'$/.test(expr)) {
      expr = expr.slice(1, -1).replaceAll("''", "'");
    } else if (/^".*"$/.test(expr)) {
      expr = JSON.parse(expr);
    }
    out.push({ where: `alert ${name}`, expr });
  });
  return out;
}

const STRING = /"(?:[^"\\]|\\.)*"/g;
const NAME = /\b(?:bandsync|process)_[a-zA-Z0-9_]*/g;

/** The server's metric names an expression uses (string literals left out). */
const namesIn = (expr) => [...new Set(expr.replace(STRING, '""').match(NAME) ?? [])];

/** Label matchers of the selectors of the server's metrics: [{metric, label, op, value}]. */
function matchersIn(expr) {
  const out = [];
  for (const [, metric, body] of expr.matchAll(/\b((?:bandsync|process)_[a-zA-Z0-9_]*)\s*\{([^}]*)\}/g)) {
    for (const [, label, op, raw] of body.matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*")/g)) {
      out.push({ metric, label, op, value: JSON.parse(raw) });
    }
  }
  return out;
}

/** Labels named in by (...) / without (...) clauses. */
const groupingIn = (expr) =>
  [...expr.matchAll(/\b(?:by|without)\s*\(([^)]*)\)/g)].flatMap(([, list]) =>
    list.split(",").map((s) => s.trim()).filter(Boolean),
  );

/** The family of a sample name: itself, or the histogram/summary it is a _bucket/_sum/_count of. */
function familyName(name, parsed) {
  const base = name.replace(HISTOGRAM_SUFFIX, "");
  const type = parsed.families.get(base)?.type;
  return base !== name && (type === "histogram" || type === "summary") ? base : name;
}

// ---- the session and the scrape -------------------------------------------------------------

const dashboard = JSON.parse(readFileSync(DASHBOARD, "utf8"));
const alertsText = readFileSync(ALERTS, "utf8");
const exprs = [...dashboardExprs(dashboard), ...ruleExprs(alertsText)];

let cluster; // one instance on its own redis-server
let scraped; // {parsed} /metrics after the session

before(async () => {
  cluster = await startCluster(1);
  const [server] = cluster.servers;
  const S = sid("mon");

  // A legacy member (the phone app): joins and leads, plays, sets the tempo.
  const legacy = await connect(server.url, { transport: "websocket" });
  await join(legacy, S, { displayName: "Drums" });
  // An enhanced member in the same session: the session is mixed while both are in it.
  const enhanced = await connect(server.url, { transport: "polling" });
  await enhancedJoin(enhanced, S, { displayName: "Keys", userId: sid("keys") });

  legacy.emit("play", { sessionId: S });
  legacy.emit("set_tempo", { sessionId: S, tempo: 132 });
  const state = await syncState(legacy, S);
  assert.equal(state.isPlaying, true, `the session plays: ${JSON.stringify(state)}`);
  assert.equal(state.tempoBpm, 132, `the tempo is set: ${JSON.stringify(state)}`);

  // A clock:sync reporting the client's last round trip (12.5 ms).
  const answer = await ack(enhanced, "clock:sync", { t0: Date.now(), rtt: 12.5 });
  assert.equal(typeof answer?.t1, "number", `clock:sync ack ${JSON.stringify(answer)}`);

  // Let the sync engine tick for a while (tick lag), then the enhanced member leaves.
  await sleep(400);
  await ackOk(enhanced, "session:leave", { sessionId: S });

  scraped = { parsed: await scrapeMetrics(server.url) };
});

after(async () => {
  closeAll();
  await cluster?.stop();
});

// ---- the checks -----------------------------------------------------------------------------

test("the expressions are found: every dashboard panel's queries and every alert rule's expr", () => {
  const panels = allPanels(dashboard).filter((p) => p.type !== "row");
  for (const p of panels) {
    assert.ok(exprs.some((e) => e.where.startsWith(`dashboard panel "${p.title}"`)), `no query found in panel "${p.title}"`);
  }
  const rules = alertsText.match(/^\s*-\s*(?:alert|record):/gm) ?? [];
  const found = exprs.filter((e) => e.where.startsWith("alert "));
  assert.equal(found.length, rules.length, `${rules.length} rules in alerts.yml, ${found.length} exprs read`);
  assert.ok(found.every((e) => e.expr.length > 0), "an empty expr was read from alerts.yml");
  assert.ok(exprs.some((e) => e.where.startsWith("dashboard variable $instance")), "the $instance variable's query");
});

test("every metric name the dashboard and the alert rules use is in /metrics after a short session", (t) => {
  const { parsed } = scraped;
  const sampleNames = new Set(parsed.samples.map((s) => s.name));
  const uses = new Map(); // name -> [where]
  for (const { where, expr } of exprs) {
    for (const name of namesIn(expr)) uses.set(name, [...(uses.get(name) ?? []), where]);
  }
  assert.ok(uses.size >= 15, `only ${uses.size} names found in the dashboard and the rules`);
  // A histogram is named by its _bucket (or _sum, _count) sample: report its family once.
  const missing = new Map(); // family -> [where]
  for (const [name, where] of uses) {
    if (sampleNames.has(name)) continue;
    const family = name.replace(HISTOGRAM_SUFFIX, "");
    missing.set(family, [...new Set([...(missing.get(family) ?? []), ...where])]);
  }
  const present = [...uses.keys()].filter((n) => sampleNames.has(n)).map((n) => familyName(n, parsed));
  t.diagnostic(`present: ${[...new Set(present)].sort().join(", ")}`);
  const report = [...missing]
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([family, where]) => `  ${family}  (used by ${where.join("; ")})`);
  assert.equal(
    missing.size,
    0,
    `${missing.size} metric(s) the dashboard or the alerts use are not in /metrics:\n${report.join("\n")}\n` +
      "(each must be exported from start-up, at 0 for label values known in advance, not only after its first event)",
  );
});

test("every label the dashboard and the alert rules match on or group by, and every literal value they match, is in /metrics", (t) => {
  const { parsed } = scraped;
  const byName = new Map(); // sample name -> samples
  for (const s of parsed.samples) byName.set(s.name, [...(byName.get(s.name) ?? []), s]);
  const labelValues = (name, label) => new Set((byName.get(name) ?? []).map((s) => s.labels[label]).filter((v) => v !== undefined));
  const problems = new Map(); // problem -> [where]
  const note = (problem, where) => problems.set(problem, [...new Set([...(problems.get(problem) ?? []), where])]);
  let checked = 0;
  for (const { where, expr } of exprs) {
    const names = namesIn(expr).filter((n) => byName.has(n)); // a missing name is the previous test's
    for (const { metric, label, op, value } of matchersIn(expr)) {
      if (TARGET_LABELS.has(label) || !byName.has(metric)) continue;
      checked++;
      const values = labelValues(metric, label);
      if (values.size === 0) {
        note(`${metric}: no label "${label}"`, where);
        continue;
      }
      // Literal values: `=`, or a plain alternation under `=~` (each word must be a value).
      const literal = op === "=" ? [value] : op === "=~" && /^[\w:.-]+(\|[\w:.-]+)*$/.test(value) ? value.split("|") : [];
      for (const v of literal) {
        if (!values.has(v)) note(`${metric}{${label}="${v}"}: no such series (values: ${[...values].sort().join(", ")})`, where);
      }
    }
    for (const label of groupingIn(expr)) {
      if (TARGET_LABELS.has(label) || names.length === 0) continue;
      checked++;
      if (!names.some((n) => labelValues(n, label).size > 0)) note(`${names.join(", ")}: no label "${label}" to group by`, where);
    }
  }
  t.diagnostic(`${checked} label uses checked`);
  const report = [...problems].map(([p, where]) => `  ${p}  (used by ${where.join("; ")})`).sort();
  assert.equal(problems.size, 0, `${problems.size} label use(s) not backed by /metrics:\n${report.join("\n")}`);
});
