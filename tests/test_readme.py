"""README's two commands are the project's contract: CI must run the same test command."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bash_blocks():
    return re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)


def test_first_two_commands_set_up_then_demo_then_test():
    first, second = (b.strip() for b in _bash_blocks()[:2])
    assert first.startswith("bash scripts/setup.sh") and "mito-wda demo" in first
    assert second.startswith("bash scripts/setup.sh") and "pytest" in second


def test_ci_runs_the_readme_test_command():
    test_cmd = _bash_blocks()[1].strip().split("&&", 1)[1].strip()
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()
    assert "scripts/setup.sh" in ci


def test_ci_lints_with_the_ruff_of_the_testing_extra_before_the_tests():
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    test_cmd = _bash_blocks()[1].strip().split("&&", 1)[1].strip()
    lint = ".venv/bin/ruff check ."
    assert lint in ci and ci.index(lint) < ci.index(test_cmd)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert any(dep.startswith("ruff") for dep in project["project"]["optional-dependencies"]["testing"])
    assert project["tool"]["ruff"]["lint"]["select"]


def test_contributing_gives_the_same_test_and_lint_commands():
    text = (ROOT / "CONTRIBUTING.md").read_text()
    assert _bash_blocks()[1].strip() in text
    assert ".venv/bin/ruff check ." in text
    for script in sorted((ROOT / "benchmarks").glob("*.py")):
        if script.name != "common.py":
            assert script.name in text, f"CONTRIBUTING.md does not say how to run {script.name}"
