#!/usr/bin/env python3
"""Fails when a lower layer of the engine imports a higher one, when the CLI, the FFI or the
loopback server reach past the engine's public face, or when a source file in src/ grows past
500 lines (split it along its seams instead).

The engine's layers (ARCHITECTURE.md, "Layers"), each a folder of src/engine/:

    model, ranges      import nothing of the engine's
    http, storage      import model and ranges
    handoff            imports model, ranges, http and storage
    run                imports all of the above

Every path that names another part of the engine is resolved: `crate::engine::x::...` and
`super::` chains (counted from the file's own module, inline `mod tests { }` blocks included).
src/ffi, src/bin and src/loopback may name only what src/engine/mod.rs re-exports:
`engine::Item`, never `engine::layer::...`.

Usage: scripts/check-layout.py [repository root]. Prints each offence and exits 1, or prints "ok".
"""

import re
import sys
from pathlib import Path

ALLOWED = {
    "model": set(),
    "ranges": set(),
    "http": {"model", "ranges"},
    "storage": {"model", "ranges"},
    "handoff": {"model", "ranges", "http", "storage"},
    "run": {"model", "ranges", "http", "storage", "handoff"},
}

PATH = re.compile(r"\b(crate::engine::|(?:super::)+)([A-Za-z_][A-Za-z0-9_]*|\*|\{)")
INLINE_MOD = re.compile(r"^(\s*)(?:pub(?:\([a-z]+\))?\s+)?mod\s+([a-z_0-9]+)\s*\{")


def module_path(root: Path, file: Path) -> list:
    parts = list(file.relative_to(root / "src").with_suffix("").parts)
    if parts[-1] == "mod":
        parts.pop()
    return parts


def code_of(line: str) -> str:
    """The line without a trailing `//` comment (doc comments included)."""
    return line.split("//", 1)[0]


def engine_offences(root: Path) -> list:
    offences = []
    engine = root / "src" / "engine"
    for file in sorted(engine.rglob("*.rs")):
        rel = file.relative_to(root)
        base = module_path(root, file)
        if len(base) < 2:
            continue  # src/engine/mod.rs: the public face may re-export anything
        layer = base[1]
        if layer not in ALLOWED:
            offences.append(f"{rel}: '{layer}' is not a known layer of the engine")
            continue
        stack = []  # (indent, name) of inline modules we are in
        for n, raw in enumerate(file.read_text().splitlines(), 1):
            while stack and re.match(rf"^{stack[-1][0]}\}}", raw):
                stack.pop()
            m = INLINE_MOD.match(raw)
            line = code_of(raw)
            here = base + [name for _, name in stack]
            for prefix, first in PATH.findall(line):
                if prefix == "crate::engine::":
                    target_layer = first
                else:
                    ups = prefix.count("super::")
                    if ups > len(here) - 1:
                        offences.append(f"{rel}:{n}: `{prefix}` climbs above the crate")
                        continue
                    resolved = here[: len(here) - ups]
                    if len(resolved) >= 2:
                        target_layer = resolved[1]
                    elif len(resolved) == 1:  # the engine's root
                        target_layer = first
                    else:
                        continue
                if target_layer in ("*", "{"):
                    offences.append(f"{rel}:{n}: imports the engine's root wholesale")
                    continue
                if target_layer == layer or target_layer not in ALLOWED:
                    continue  # its own layer, or a root re-export such as `crate::engine::Error`
                if target_layer not in ALLOWED[layer]:
                    offences.append(f"{rel}:{n}: {layer} may not import {target_layer}: {raw.strip()}")
            if m:
                stack.append((m.group(1), m.group(2)))
    return offences


def face_offences(root: Path) -> list:
    offences = []
    deep = re.compile(r"\b(?:crate|ferry)::engine::(" + "|".join(ALLOWED) + r")::")
    grouped = re.compile(r"\b(?:crate|ferry)::engine::\{[^}]*\b(" + "|".join(ALLOWED) + r")\b")
    for folder in ("ffi", "bin", "loopback"):
        for file in sorted((root / "src" / folder).rglob("*.rs")):
            for n, raw in enumerate(file.read_text().splitlines(), 1):
                line = code_of(raw)
                if deep.search(line) or grouped.search(line) or re.search(r"\bengine::(" + "|".join(ALLOWED) + r")::", line):
                    offences.append(f"{file.relative_to(root)}:{n}: reaches past the engine's public face: {raw.strip()}")
    return offences


MAX_LINES = 500


def size_offences(root: Path) -> list:
    offences = []
    for file in sorted((root / "src").rglob("*.rs")):
        lines = file.read_text().count("\n")
        if lines > MAX_LINES:
            offences.append(f"{file.relative_to(root)}: {lines} lines (at most {MAX_LINES})")
    return offences


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
    offences = engine_offences(root) + face_offences(root) + size_offences(root)
    for o in offences:
        print(o)
    if offences:
        print(f"{len(offences)} layout offence(s)", file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
