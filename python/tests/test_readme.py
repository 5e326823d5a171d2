"""The README example, executed verbatim against a loopback server."""

import re
from pathlib import Path

from helpers import sha256_of

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"<!-- readme-example[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md has no marked example"
    return match.group(1)


def test_readme_example(server, monkeypatch, capsys):
    code = readme_example()
    assert len(code.strip().splitlines()) <= 10
    monkeypatch.setenv("FERRY_URL", server.url)
    namespace = {"__name__": "__readme__"}
    exec(compile(code, str(README), "exec"), namespace)
    assert capsys.readouterr().out.startswith(f"TaskState.COMPLETED {server.size} bytes in ")
    assert sha256_of(namespace["dest"]) == server.sha256
