#!/usr/bin/env bash
# The whole test suite, from a fresh clone: lints, Rust unit and integration tests, then the
# compatibility tests with the real socket.io-client against the release binary.
# Installs what it needs: redis-server from the system package manager when missing, and the
# compat-tests' Node packages (npm ci). Tests start their own redis-server on free ports.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

if ! command -v redis-server >/dev/null; then
    step "installing redis-server"
    sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    sudo_if_needed apt-get update -qq
    sudo_if_needed env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
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
