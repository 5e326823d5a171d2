#!/usr/bin/env python3
"""Turns the JSON lines of examples/handoff_bench (stdin) into the markdown table of
bench/results/handoff.md: medians of every figure."""

import datetime
import json
import platform
import statistics
import sys


def main():
    rows = [json.loads(line) for line in sys.stdin if line.strip()]
    med = lambda key: statistics.median(r[key] for r in rows)
    cpu = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), cpu)
    except OSError:
        pass
    chunk_mib = med("chunk_bytes") / 1048576
    print(f"# Hand-off benchmark ({datetime.date.today()}, {cpu}, {len(rows)} runs, medians)\n")
    print("| figure | value |")
    print("|---|---|")
    print(f"| hand off 100 running downloads (stop, sync, lease) | {med('handoff_ms'):.1f} ms |")
    print(f"| ingest a {chunk_mib:.2f} MiB chunk (judge, copy_file_range, fdatasync, journal) | {med('ingest_ms'):.1f} ms |")
    print(f"| plain copy of the same file + fsync | {med('copy_ms'):.1f} ms |")
    print(f"| bytes fetched twice, 1 GiB across a hand-off and a take-back | {med('twice_bytes') / 1048576:.2f} MiB |")
    print("\nRuns: " + "; ".join(json.dumps(r) for r in rows))


if __name__ == "__main__":
    main()
