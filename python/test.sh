#!/usr/bin/env bash
# Installs the Python package the way a newcomer does, `pip install ./python` (setup.py builds the
# Rust library with `cargo build --release --lib` into the shared target/ and packages it with the
# checked-in bindings), into the virtual environment target/python-venv with pytest, and runs the
# pytest suite in python/tests against that install. The tests' servers are `ferry.testing`'s, in
# the test process; the `ferry` CLI is a second client in the test of two processes on one state
# directory.
#
# The release build takes minutes the first time; after that cargo finds it up to date, and the
# release dependencies it built are the ones `cargo run --release -- demo` uses. For a fast loop on
# a debug build, package that library instead: FERRY_LIB=target/debug/libferry.so (after
# `cargo build --lib`); CI leaves FERRY_LIB unset, so it tests the real build path.
# Run from anywhere; exits non-zero when anything fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

# `ferry get` for test_shared_dir.py: the debug CLI, which the Rust suite has already built.
cargo build --bin ferry
target="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"

venv="$root/target/python-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
pip=("$venv/bin/python" -m pip --disable-pip-version-check)
"${pip[@]}" install --quiet pytest

if [ -n "${FERRY_LIB:-}" ]; then
  FERRY_LIB="$(realpath "$FERRY_LIB")"  # setup.py runs in python/: make it absolute
  export FERRY_LIB
  echo "==> pip install ./python (packaging FERRY_LIB=$FERRY_LIB)"
else
  echo "==> pip install ./python (cargo build --release --lib: minutes the first time)"
fi
start=$SECONDS
"${pip[@]}" install --quiet ./python
echo "==> installed in $((SECONDS - start)) s: $("$venv/bin/python" -c 'import ferry; print(ferry.__file__)')"

export FERRY_BIN="$target/debug/ferry"
# The installed package is what is tested: run from the repository root (no `ferry` package there)
# with the pytest script (which, unlike `python -m pytest`, does not put the cwd on sys.path).
"$venv/bin/pytest" "$here/tests" -p no:cacheprovider -q "$@"
