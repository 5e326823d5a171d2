"""Build hooks of the `ferry` wheel: `pip install ./python` builds the Rust library and packages it.

The wheel is built from this repository's artifacts, never from hand-edited copies:

* `ferry/_ffi.py` is copied from `bindings/python/ferry_ffi.py` (produced by `bindings/generate.sh`);
* the native library (`libferry.so`, `libferry.dylib` on macOS) is built here with
  `cargo build --release --lib`, or copied from `$FERRY_LIB` when that is set (e.g. a debug build,
  for a fast local loop).

Why cargo is run from here rather than through setuptools-rust or maturin: the library is loaded by
the uniffi bindings as `libferry.so` next to `_ffi.py`, and is independent of the Python version.
setuptools-rust's `Binding.NoBinding` renames it with the CPython suffix
(`libferry.cpython-311-x86_64-linux-gnu.so`, which the bindings cannot find) and tags the wheel for
one CPython; maturin's `bindings = "uniffi"` generates its own bindings with its own uniffi-bindgen
instead of the checked-in ones, which `bindings/generate.sh` makes with the crate's own generator.
Running the same `cargo build --release --lib` a developer runs needs no build dependency beyond
setuptools, shares `target/` (or `$CARGO_TARGET_DIR`) with every other build of the repository (a
second install finds the library up to date and builds nothing), and uses the machine's cargo
configuration (e.g. a vendored crate mirror).

Both files are copied straight into the build directory, so the source tree stays clean. The wheel
is tagged `py3-none-<platform>`: it holds a native library but no CPython extension module.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.dist import Distribution

try:
    from setuptools.command.bdist_wheel import bdist_wheel
except ImportError:  # setuptools < 70.1
    from wheel.bdist_wheel import bdist_wheel

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
LIB_NAME = {"darwin": "libferry.dylib", "win32": "ferry.dll"}.get(sys.platform, "libferry.so")


def cargo_version():
    """The `version` of the `[package]` table of the repository's Cargo.toml."""
    text = (REPO / "Cargo.toml").read_text(encoding="utf-8")
    package = text.split("[package]", 1)[1].split("\n[", 1)[0]
    return re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)


def artifact(path, hint):
    """`path` if it exists, else stop the build with `hint`."""
    if not path.is_file():
        sys.exit(f"ferry: {path} not found; {hint}")
    return path


def cargo_build():
    """Runs `cargo build --release --lib` on the repository; returns the path of the cdylib.

    The path is taken from cargo's own report of the artifact, so `$CARGO_TARGET_DIR` and cargo
    configuration are honoured. Cargo's diagnostics go to stderr (`pip install -v` shows them).
    """
    manifest = REPO / "Cargo.toml"
    if not manifest.is_file():
        sys.exit(f"ferry: {manifest} not found; build the package from a clone of the repository, "
                 "with pip >= 21.3 (older pips build a copy of python/ alone)")
    cargo = os.environ.get("CARGO", "cargo")
    if shutil.which(cargo) is None:
        sys.exit("ferry: cargo not found; install Rust (https://rustup.rs), "
                 "or set FERRY_LIB to an already built libferry")
    command = [cargo, "build", "--release", "--lib", "--manifest-path", str(manifest),
               "--message-format=json-render-diagnostics"]
    print("ferry: " + " ".join(command[:4]) + " (a release build takes a few minutes)", file=sys.stderr)
    result = subprocess.run(command, cwd=REPO, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        sys.exit(f"ferry: cargo build failed (exit {result.returncode})")
    for line in result.stdout.splitlines():
        message = json.loads(line) if line.startswith("{") else {}
        target = message.get("target", {})
        if message.get("reason") == "compiler-artifact" and target.get("name") == "ferry" \
                and "cdylib" in target.get("kind", []):
            for filename in message.get("filenames", []):
                if Path(filename).name == LIB_NAME:
                    return Path(filename)
    sys.exit(f"ferry: cargo reported no {LIB_NAME}")


class BuildPyWithNative(build_py):
    """Adds the generated bindings and the native library to the built package."""

    def run(self):
        package_dir = Path(self.build_lib) / "ferry"
        # A previous build's copy may hold modules since removed: start from the sources only.
        shutil.rmtree(package_dir, ignore_errors=True)
        super().run()
        bindings = artifact(REPO / "bindings" / "python" / "ferry_ffi.py", "run bindings/generate.sh")
        lib = os.environ.get("FERRY_LIB")
        lib = artifact(Path(lib), "set FERRY_LIB to a built library") if lib else cargo_build()
        shutil.copyfile(bindings, package_dir / "_ffi.py")
        shutil.copy(lib, package_dir / LIB_NAME)


class NativeDistribution(Distribution):
    """A distribution with a native library: installed to platlib, in a platform wheel."""

    def has_ext_modules(self):
        return True


class PlatformWheel(bdist_wheel):
    """Tags the wheel for the platform of the native library, for any Python 3."""

    def get_tag(self):
        return ("py3", "none", super().get_tag()[2])


setup(
    version=cargo_version(),
    distclass=NativeDistribution,
    cmdclass={"build_py": BuildPyWithNative, "bdist_wheel": PlatformWheel},
)
