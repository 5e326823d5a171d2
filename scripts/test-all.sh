#!/usr/bin/env bash
# Runs every test: Rust (unit, integration with fault injection, nginx, SIGKILL crash, disk full),
# the bindings freshness check, Swift (XCTest on Linux), Kotlin (JUnit on a plain JVM) and Python
# (pytest, against `pip install ./python` in target/python-venv; that release build of the library
# also leaves the release dependencies the demo reuses). Each suite reports its own test count;
# the summary at the end repeats them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR=never
log="target/test-logs"
mkdir -p "$log"
summary=()

step() { echo; echo "==== $*"; }

step "test dependencies"
bash scripts/install-test-deps.sh

step "README examples are the tested ones"
python3 scripts/check-readme.py

step "layering: the engine never names uniffi, its layers import downwards only, files stay small"
if grep -rn "uniffi" src/engine; then echo "src/engine must not name uniffi" >&2; exit 1; fi
python3 scripts/check-layout.py

step "Rust"
cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
cargo build --all-targets 2>&1 | tail -n 3
cargo test --no-fail-fast 2>&1 | tee "$log/rust.txt" | grep -E "^(test result|running|     Running)|FAILED|panicked" || true
if grep -q "FAILED\|error: test failed\|could not compile" "$log/rust.txt"; then echo "Rust tests failed" >&2; exit 1; fi
rust_count=$(grep -E "^test result" "$log/rust.txt" | awk '{s+=$4} END {print s}')
summary+=("Rust:   $rust_count tests passed")

step "bindings are fresh"
bash scripts/check-bindings.sh

step "Swift"
bash ios/test-linux.sh 2>&1 | tee "$log/swift.txt"
summary+=("Swift:  $(grep -Eo "Executed [0-9]+ tests?, with 0 failures" "$log/swift.txt" | tail -n 1)")

step "Kotlin"
bash android/test-jvm.sh 2>&1 | tee "$log/kotlin.txt"
summary+=("Kotlin: $(grep -Eo "OK \([0-9]+ tests?\)" "$log/kotlin.txt" | tail -n 1)")

step "Python"
bash python/test.sh 2>&1 | tee "$log/python.txt"
summary+=("Python: $(grep -Eo "[0-9]+ passed" "$log/python.txt" | tail -n 1)")

step "demo (the README's main job, smaller)"
cargo run --quiet --release -- demo --size-mib 64 | tee "$log/demo.txt"

echo
echo "==== all suites passed"
printf '%s\n' "${summary[@]}"
