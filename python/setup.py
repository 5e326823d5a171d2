"""Build hooks of the `ferry` wheel.

The wheel is built from this repository's artifacts, never from hand-edited copies:

* `ferry/_ffi.py` is copied from `bindings/python/ferry_ffi.py` (produced by `bindings/generate.sh`);
* the native library (`libferry.so`, `libferry.dylib` on macOS) is copied from `$FERRY_LIB`, or from
  `<repo>/target/release/` when `FERRY_LIB` is not set.

Both are copied straight into the build directory, so the source tree stays clean. The wheel is
tagged `py3-none-<platform>`: it holds a native library but no CPython extension module.
"""

import os
import re
import shutil
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


class BuildPyWithNative(build_py):
    """Adds the generated bindings and the native library to the built package."""

    def run(self):
        super().run()
        bindings = artifact(REPO / "bindings" / "python" / "ferry_ffi.py", "run bindings/generate.sh")
        default_lib = REPO / "target" / "release" / LIB_NAME
        lib = artifact(Path(os.environ.get("FERRY_LIB", default_lib)),
                       "run `cargo build --release --lib` or set FERRY_LIB to the built library")
        package_dir = Path(self.build_lib) / "ferry"
        package_dir.mkdir(parents=True, exist_ok=True)
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
