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
printf '%s\n' "${runs[@]}" | python3 -c '
import json, statistics, sys, datetime, platform
rows = [json.loads(l) for l in sys.stdin if l.strip()]
med = lambda k: statistics.median(r[k] for r in rows)
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.machine())
print(f"# Hand-off benchmark ({datetime.date.today()}, {cpu}, {len(rows)} runs, medians)\n")
print("| figure | value |")
print("|---|---|")
print(f"| hand off 100 running downloads (stop, sync, lease) | {med(\"handoff_ms\"):.1f} ms |")
print(f"| ingest a 32 MiB chunk (judge, copy_file_range, fdatasync, journal) | {med(\"ingest_ms\"):.1f} ms |")
print(f"| plain copy of the same file + fsync | {med(\"copy_ms\"):.1f} ms |")
print(f"| bytes fetched twice, 1 GiB across a hand-off and a take-back | {med(\"twice_bytes\") / 1048576:.2f} MiB |")
print("\nRuns: " + "; ".join(json.dumps(r) for r in rows))
' | tee bench/results/handoff.md
