#!/usr/bin/env bash
# One command for the whole benchmark: installs the peers and the server (nginx, curl, aria2 from
# Debian's packages; openssl makes the certificates of the https rows), builds ferry in release
# mode, runs every case and writes bench/results/latest.md. Options are passed to bench.py (e.g.
# --reps 5, --cases 1,2, --schemes https, --ferry-before path/to/older/ferry, --quick).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-test-deps.sh
cargo build --quiet --release --bin ferry --example scale --example shared_dir
python3 bench/bench.py "$@"
