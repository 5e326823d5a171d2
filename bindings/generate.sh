#!/usr/bin/env bash
# The only producer of bindings/: builds the library and generates the Swift, Kotlin and Python
# bindings from it (uniffi library mode, with the uniffi-bindgen built from this crate so the
# generator always matches the uniffi dependency). Run from anywhere; idempotent.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

cargo build --quiet --lib
cargo build --quiet --features bindgen --bin uniffi-bindgen
# Where cargo put them (CARGO_TARGET_DIR or the build configuration may move target/).
target="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
lib="$target/debug/libferry.so"
[ -f "$lib" ] || lib="$target/debug/libferry.dylib"
bindgen="$target/debug/uniffi-bindgen"

out="$root/bindings"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

"$bindgen" generate --library "$lib" --language swift --out-dir "$tmp/swift" --no-format >/dev/null
"$bindgen" generate --library "$lib" --language kotlin --out-dir "$tmp/kotlin" --no-format >/dev/null
"$bindgen" generate --library "$lib" --language python --out-dir "$tmp/python" --no-format >/dev/null

rm -rf "$out/swift" "$out/kotlin" "$out/python"
mkdir -p "$out/swift/FerryFFI" "$out/swift/FerryBindings" "$out/kotlin" "$out/python"
cp "$tmp/swift/FerryFFI.h" "$out/swift/FerryFFI/FerryFFI.h"
# SwiftPM only finds a modulemap named module.modulemap.
cp "$tmp/swift/FerryFFI.modulemap" "$out/swift/FerryFFI/module.modulemap"
cp "$tmp/swift/FerryBindings.swift" "$out/swift/FerryBindings/FerryBindings.swift"
cp -R "$tmp/kotlin/." "$out/kotlin/"
cp "$tmp/python/ferry.py" "$out/python/ferry_ffi.py"
echo "bindings regenerated in bindings/{swift,kotlin,python}"
