"""README.md of this directory is the list of adversarial cases: it must name every test function
here and in e2e/test_adversarial.py, name no test that does not exist, and count what pytest collects
(as first written it said 40 functions / 67 cases when there were 41 / 68, and missed one test)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
README = HERE / "README.md"
E2E = REPO / "e2e" / "test_adversarial.py"
REF = re.compile(r"`((?:[\w./-]+\.py|…)::\w+)`")


def functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        n.name
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name.startswith("test_")
    }


def listed() -> list[tuple[Path, str]]:
    """Every (file, test) the README's table names, in order; `…::name` is in the last file named."""
    out: list[tuple[Path, str]] = []
    last: Path | None = None
    for line in README.read_text().splitlines():
        if not line.startswith("| "):
            continue
        for ref in REF.findall(line):
            where, name = ref.split("::")
            if where != "…":
                last = (HERE / where) if "/" not in where else (REPO / where)
            assert last is not None, f"{ref}: `…` before any file is named"
            out.append((last, name))
    return out


def collected(*args: str) -> int:
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    m = re.search(r"(\d+) tests? collected", res.stdout)
    assert m, res.stdout[-2000:] + res.stderr[-2000:]
    return int(m.group(1))


def test_the_readme_lists_every_adversarial_test() -> None:
    refs = listed()
    for path, name in refs:  # nothing named that does not exist
        assert path.is_file(), f"README names {path.relative_to(REPO)}, which does not exist"
        assert name in functions(path), f"README names {path.relative_to(REPO)}::{name}, which does not exist"
    named = {(p, n) for p, n in refs}
    here = {(p, n) for p in sorted(HERE.glob("test_*.py")) for n in functions(p)}
    wanted = here | {(E2E, n) for n in functions(E2E)}
    missing = sorted(f"{p.relative_to(REPO)}::{n}" for p, n in wanted - named)
    assert not missing, f"tests/adversarial/README.md does not list: {missing}"

    text = " ".join(README.read_text().split())
    m = re.search(
        r"\*\*Count: (\d+) test functions, (\d+) cases with their parameters, in this directory; (\d+) more "
        r"unit test functions \((\d+) cases\) in .*?; (\d+) e2e tests in `e2e/test_adversarial.py`",
        text,
    )
    assert m, "the README's count line is not in the expected form"
    funcs, cases, more_funcs, more_cases, e2e = map(int, m.groups())
    outside = sorted({(p, n) for p, n in refs if p.parent.name == "tests" and p.parent.parent == REPO})
    actual = (
        len(here),
        collected(str(HERE)),
        len(outside),
        collected(*(f"{p.relative_to(REPO)}::{n}" for p, n in outside)),
        len(functions(E2E)),
    )
    assert (funcs, cases, more_funcs, more_cases, e2e) == actual, (
        f"README counts {(funcs, cases, more_funcs, more_cases, e2e)}, actual {actual} "
        "(functions and cases here; unit functions and cases elsewhere; e2e tests)"
    )
