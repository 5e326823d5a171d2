"""The README's examples, executed verbatim: the download example against a loopback server, and
the unit test of "Unit-testing your download code" as the pytest test it is."""

import re
from pathlib import Path

from helpers import sha256_of

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_block(marker: str) -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(rf"<!-- {marker}[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README.md has no block marked {marker}"
    return match.group(1)


def test_readme_example(server, monkeypatch, capsys):
    code = readme_block("readme-example")
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.setenv("FERRY_URL", server.url)
    namespace = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)
    assert capsys.readouterr().out.startswith(f"TaskState.COMPLETED {server.size} bytes in ")
    assert sha256_of(namespace["dest"]) == server.sha256


def test_readme_testing_example(tmp_path):
    code = readme_block("readme-testing")
    assert len(code.strip().splitlines()) <= 10
    namespace = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)
    tests = [value for name, value in namespace.items() if name.startswith("test_") and callable(value)]
    assert len(tests) == 1, "the README shows one test"
    tests[0](tmp_path)
    assert (tmp_path / "file.bin").stat().st_size == 1 << 20
