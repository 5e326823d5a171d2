#!/usr/bin/env python3
"""Checks that the READMEs show exactly the examples the language suites execute.

The root README: the Swift and Kotlin snippets between the README markers of their tests, and the
Python snippet that python/tests/test_readme.py runs from python/README.md.
Each language README's "Unit-testing your download code" section: the Swift and Kotlin unit tests
between the "README testing" markers of TestingProductTests.swift and TestingArtifactTest.kt, and
the Python test marked `readme-testing`, which python/tests/test_readme.py runs from the README."""
import re
import sys
import textwrap
from pathlib import Path

root = Path(__file__).resolve().parents[1]
readme = (root / "README.md").read_text(encoding="utf-8")


def between(path, begin, end):
    text = (root / path).read_text(encoding="utf-8")
    body = text.split(begin, 1)[1].split(end, 1)[0]
    # Drop the rest of the begin marker's line and the indentation before the end marker.
    return textwrap.dedent(body.split("\n", 1)[1].rsplit("\n", 1)[0]).strip()


tested = {
    "swift": between("ios/Tests/FerryTests/ReadmeExampleTests.swift", "// README begin", "// README end"),
    "kotlin": between("android/core/src/test/kotlin/dev/ferry/ReadmeExampleTest.kt", "// README example: begin", "// README example: end"),
    "python": re.search(r"<!-- readme-example[^>]*-->\s*```python\n(.*?)```", (root / "python/README.md").read_text(), re.S).group(1).strip(),
}
shown = {lang: [b.strip() for b in re.findall(rf"```{lang}\n(.*?)```", readme, re.S)] for lang in tested}
failed = False
for lang, code in tested.items():
    lines = len(code.splitlines())
    if code not in shown[lang]:
        print(f"README.md does not show the tested {lang} example:\n{code}\n", file=sys.stderr)
        failed = True
    elif lines > 10:
        print(f"the {lang} example has {lines} lines (at most 10)", file=sys.stderr)
        failed = True
    else:
        print(f"README {lang} example: {lines} lines, identical to the tested one")


def testing_section(path, lang):
    """The first `lang` block of the "Unit-testing your download code" section of `path`."""
    text = (root / path).read_text(encoding="utf-8")
    section = text.split("## Unit-testing your download code", 1)
    if len(section) < 2:
        return None
    block = re.search(rf"```{lang}\n(.*?)```", section[1].split("\n## ", 1)[0], re.S)
    return block.group(1).strip() if block else None


testing = {
    ("ios/README.md", "swift"): between("ios/Tests/FerryTests/TestingProductTests.swift", "// README testing: begin", "// README testing: end"),
    ("android/README.md", "kotlin"): between("android/core/src/test/kotlin/dev/ferry/TestingArtifactTest.kt", "// README testing: begin", "// README testing: end"),
    # test_readme.py executes the marked block itself: check it is the one the section shows.
    ("python/README.md", "python"): re.search(r"<!-- readme-testing[^>]*-->\s*```python\n(.*?)```", (root / "python/README.md").read_text(encoding="utf-8"), re.S).group(1).strip(),
}
for (path, lang), code in testing.items():
    lines = len(code.splitlines())
    if testing_section(path, lang) != code:
        print(f"{path} does not show the tested {lang} unit test in \"Unit-testing your download code\":\n{code}\n", file=sys.stderr)
        failed = True
    elif lines > 10:
        print(f"the {lang} unit test of {path} has {lines} lines (at most 10)", file=sys.stderr)
        failed = True
    else:
        print(f"{path} unit test: {lines} lines, identical to the tested one")
sys.exit(1 if failed else 0)
