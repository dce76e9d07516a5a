"""The benchmark scripts still run against the library (their quick modes, ``-m slow``):
a script that reuses another's helpers breaks silently when those are renamed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.mark.parametrize(
    ("script", "args"),
    [
        ("softmax_faithful.py", ["--quick"]),
        ("core_quality.py", ["--quick", "--seeds", "0", "--cases", "digits_relu_fc1"]),
    ],
)
def test_quick_mode_runs_and_writes_its_results(script, args, tmp_path):
    out = tmp_path / "result"
    done = subprocess.run(
        [sys.executable, str(BENCHMARKS / script), *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=800,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(out.with_suffix(".json").read_text())
    assert "digits_relu_fc1" in out.with_suffix(".md").read_text()
