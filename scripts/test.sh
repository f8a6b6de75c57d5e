#!/usr/bin/env bash
# The whole test suite, from a fresh clone: lints, Rust unit and integration tests, then the
# compatibility tests with the real socket.io-client against the release binary.
# Installs what it needs: system packages from the package manager when missing (see below), and
# the compat-tests' Node packages (npm ci). Tests start their own servers on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# System packages the tests use, installed in one go when missing: redis-server and redis-cli
# (Redis tests), chromium (the browser test), nginx and prometheus (nginx -t, promtool),
# python3-yaml (compose).
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v redis-cli >/dev/null || missing+=(redis-tools)
command -v chromium >/dev/null || missing+=(chromium)
command -v nginx >/dev/null || missing+=(nginx)
command -v promtool >/dev/null || missing+=(prometheus)
/usr/bin/python3 -c 'import yaml' 2>/dev/null || missing+=(python3-yaml)
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    # Install services without starting them: the tests start their own on free ports.
    policy=/usr/sbin/policy-rc.d
    added_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee "$policy" >/dev/null && as_root chmod +x "$policy" && added_policy=1
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    if [ -n "$added_policy" ]; then as_root rm -f "$policy"; fi
fi

step "deployment files (nginx -t, promtool, compose, Dockerfile)"
bash scripts/check-deploy.sh

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

step "Rust tests"
cargo test --quiet

step "release build for the compatibility tests"
cargo build --release --quiet

step "compat-tests: installing Node packages"
(cd compat-tests && npm ci --no-audit --no-fund --loglevel=error)

step "compat-tests"
(cd compat-tests && npm test)
