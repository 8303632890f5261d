"""The benchmarks stay runnable: ``python -m bench`` imports every one of them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def test_every_benchmark_imports_and_is_listed() -> None:
    listed = subprocess.run(
        [sys.executable, "-m", "bench", "--help"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert listed.returncode == 0, listed.stderr  # an import error of any benchmark fails it
    words = set(listed.stdout.replace(",", " ").split())
    assert {"chat", "cluster", "journal-api", "knowledge", "knowledge-loop"} <= words, words
