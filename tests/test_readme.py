"""README's two commands are the project's contract: CI must run the same test command."""

import re
from pathlib import Path

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
