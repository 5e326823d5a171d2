#!/usr/bin/env bash
# Builds target/apple/FerryFFI.xcframework for the root Package.swift's `.binaryTarget` (Apple hosts
# only: needs Xcode's xcodebuild and lipo, plus the rustup targets listed below).
#
#   bash ios/build-xcframework.sh            # release
#   bash ios/build-xcframework.sh --debug    # debug (faster to build)
#
# Slices: iOS device (arm64), iOS simulator (arm64 + x86_64, lipo'd), macOS (arm64 + x86_64, lipo'd;
# for `swift test` on a Mac). Each slice is the Rust static library; the headers are the generated
# FerryFFI.h and module.modulemap (a plain `module`, not a `framework module`, which is what
# `-create-xcframework -library` bundles need), kept in a FerryFFI/ subfolder so they cannot clash
# with another UniFFI library's headers in the same app.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"

profile=release
cargo_profile=(--release)
case "${1:-}" in
    --debug) profile=debug; cargo_profile=() ;;
    "") ;;
    *) echo "usage: $0 [--debug]" >&2; exit 2 ;;
esac

if [ "$(uname -s)" != "Darwin" ]; then
    echo "build-xcframework.sh needs macOS with Xcode (xcodebuild, lipo)" >&2
    exit 1
fi
for tool in cargo xcodebuild lipo; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 1; }
done

ios_targets=(aarch64-apple-ios)
sim_targets=(aarch64-apple-ios-sim x86_64-apple-ios)
mac_targets=(aarch64-apple-darwin x86_64-apple-darwin)
all_targets=("${ios_targets[@]}" "${sim_targets[@]}" "${mac_targets[@]}")

if command -v rustup >/dev/null; then
    installed="$(rustup target list --installed)"
    for t in "${all_targets[@]}"; do
        grep -qx "$t" <<<"$installed" || { echo "missing Rust target $t: rustup target add $t" >&2; exit 1; }
    done
fi

# Keep in step with `platforms:` in Package.swift.
export IPHONEOS_DEPLOYMENT_TARGET=15.0
export MACOSX_DEPLOYMENT_TARGET=12.0
# An Xcode build phase may export an SDKROOT for one platform; each target picks its own.
unset SDKROOT

# The library only: no `ferry` command line tool, no loopback server.
for t in "${all_targets[@]}"; do
    echo "==> cargo build --lib --target $t ($profile)"
    cargo build --locked --lib --no-default-features --features testing "${cargo_profile[@]}" --target "$t"
done

out="$root/target/apple"
work="$out/work"
rm -rf "$work" "$out/FerryFFI.xcframework"
mkdir -p "$work/ios" "$work/ios-simulator" "$work/macos" "$work/headers/FerryFFI"

lib() { echo "$root/target/$1/$profile/libferry.a"; }

cp "$(lib aarch64-apple-ios)" "$work/ios/libferry.a"
lipo -create "$(lib aarch64-apple-ios-sim)" "$(lib x86_64-apple-ios)" -output "$work/ios-simulator/libferry.a"
lipo -create "$(lib aarch64-apple-darwin)" "$(lib x86_64-apple-darwin)" -output "$work/macos/libferry.a"

cp "$root/bindings/swift/FerryFFI/FerryFFI.h" "$work/headers/FerryFFI/FerryFFI.h"
cp "$root/bindings/swift/FerryFFI/module.modulemap" "$work/headers/FerryFFI/module.modulemap"
if grep -q "framework module" "$work/headers/FerryFFI/module.modulemap"; then
    echo "the modulemap must be a plain 'module' for a -library XCFramework" >&2
    exit 1
fi

xcodebuild -create-xcframework \
    -library "$work/ios/libferry.a" -headers "$work/headers" \
    -library "$work/ios-simulator/libferry.a" -headers "$work/headers" \
    -library "$work/macos/libferry.a" -headers "$work/headers" \
    -output "$out/FerryFFI.xcframework"

rm -rf "$work"
echo "built $out/FerryFFI.xcframework ($profile)"
