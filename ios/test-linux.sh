#!/usr/bin/env bash
# Builds the Rust static library and the `ferry` tool (debug), then runs the Swift package's tests
# on Linux against the static library. The tests' HTTP servers are FerryTesting's `TestServer`, in
# the test process; the `ferry` tool is a second client in the test of two processes on one state
# directory. Run from anywhere: `bash ios/test-linux.sh [swift test args]`.
#
# The static library is staged alone in target/swift-linux/, so the linker cannot pick
# libferry.so and nothing is needed at run time. The extra -l flags are what the staticlib needs
# from the system (`cargo rustc --lib --crate-type staticlib -- --print native-static-libs`).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

for tool in cargo swift; do
    command -v "$tool" >/dev/null || { echo "test-linux.sh: $tool is not on PATH" >&2; exit 1; }
done

cargo build --lib --bin ferry

stage="$root/target/swift-linux"
rm -rf "$stage"
mkdir -p "$stage"
cp target/debug/libferry.a "$stage/"

# `ferry get`, the other process of SharedDirectoryTests (a client, not a server).
export FERRY_BIN="$root/target/debug/ferry"

native_libs=(-lgcc_s -lutil -lrt -lpthread -lm -ldl -lc)
link=(-Xlinker "-L$stage" -Xlinker -lferry)
for lib in "${native_libs[@]}"; do link+=(-Xlinker "$lib"); done

# swift test prints the XCTest summary ("Executed N tests, with M failures") and exits non-zero
# on failure; pipefail keeps that status through the tee.
log="$stage/swift-test.log"
set +e
swift test "${link[@]}" "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
summary="$(grep -E 'Executed [0-9]+ tests?' "$log" | tail -n 1 || true)"
echo "test-linux.sh: ${summary:-no XCTest summary found}"
if [ "$status" -ne 0 ]; then
    echo "test-linux.sh: swift test failed (exit $status)" >&2
    exit "$status"
fi
if [ -z "$summary" ]; then
    echo "test-linux.sh: no tests ran" >&2
    exit 1
fi
