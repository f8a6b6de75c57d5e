#!/usr/bin/env bash
# The whole test suite, from a fresh clone: lints, Rust unit and integration tests, then the
# compatibility tests with the real socket.io-client against the release binary.
# Installs what it needs: the compat-tests' Node packages (npm ci).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

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
