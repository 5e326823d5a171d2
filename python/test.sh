#!/usr/bin/env bash
# Builds the debug library and the `ferry` CLI, builds a wheel of the Python package from them
# (setup.py copies the generated bindings and the library into it), installs it with pytest into
# target/python-venv, and runs the pytest suite in python/tests against `ferry serve`.
# Run from anywhere; exits non-zero when anything fails.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"

cargo build --lib --bin ferry

target="$(cargo metadata --format-version 1 --no-deps \
  | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')"
case "$(uname -s)" in
  Darwin) lib="$target/debug/libferry.dylib" ;;
  *) lib="$target/debug/libferry.so" ;;
esac

venv="$root/target/python-venv"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
py="$venv/bin/python"
"$py" -m pip install --quiet --disable-pip-version-check pytest

wheels="$root/target/python-wheels"
rm -rf "$wheels" "$here/build"
FERRY_LIB="$lib" "$py" -m pip wheel --quiet --disable-pip-version-check --no-deps -w "$wheels" "$here"
rm -rf "$here/build" "$here/ferry.egg-info"
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheels"/ferry-*.whl

export FERRY_BIN="$target/debug/ferry"
# The installed wheel is what is tested: run from the repository root (no `ferry` package there)
# with the pytest script (which, unlike `python -m pytest`, does not put the cwd on sys.path).
"$venv/bin/pytest" "$here/tests" -p no:cacheprovider -q "$@"
