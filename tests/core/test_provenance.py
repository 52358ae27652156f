"""The commit a result is stamped with: changed code marks it "+dirty", a benchmark's own outputs do not."""

import shutil
import subprocess

import pytest

from napari_mito_wda.core.data.provenance import git_commit

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="needs git")


def _git(repo, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=repo, check=True,
                   capture_output=True)


def test_results_and_docs_written_by_a_benchmark_leave_the_commit_clean_and_code_does_not(tmp_path):
    for rel in ("src/code.py", "docs/benchmarks.md", "benchmarks/results/rows.jsonl", "benchmarks/bench.py"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("one\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "commit", "-qm", "first")
    head = git_commit(tmp_path)
    assert len(head) >= 7 and not head.endswith("+dirty")
    (tmp_path / "docs" / "benchmarks.md").write_text("a new table\n")
    (tmp_path / "benchmarks" / "results" / "rows.jsonl").write_text("one\ntwo\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "benchmarks" / "bench.py").write_text("changed\n")
    assert git_commit(tmp_path) == head + "+dirty"
