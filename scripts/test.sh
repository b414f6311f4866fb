#!/usr/bin/env bash
# README command 2: the whole test suite (format, lints, unit and behaviour tests against a
# real PostgreSQL that the tests start themselves).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export PATH="/usr/lib/postgresql/15/bin:$PATH"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
# The Debian package: build, install, start from /etc/pg_doorman, pgbench, purge.
bash scripts/package-test.sh
