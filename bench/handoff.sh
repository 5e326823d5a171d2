#!/usr/bin/env bash
# The hand-off benchmark: builds examples/handoff_bench in release mode, runs it `--reps` times
# (default 3) and writes bench/results/handoff.md with the medians: handing off 100 running
# downloads, ingesting a 32 MiB chunk against a plain copy with fsync, and the bytes fetched twice
# across a hand-off and a take-back of a 1 GiB download. Everything runs on loopback.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
reps=3
[ "${1:-}" = "--reps" ] && reps="$2"
cargo build --quiet --release --example handoff_bench
runs=()
for _ in $(seq "$reps"); do
  runs+=("$(target/release/examples/handoff_bench)")
done
printf '%s\n' "${runs[@]}" | python3 bench/handoff_report.py | tee bench/results/handoff.md
