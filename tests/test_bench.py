"""The benchmark scripts keep working: each runs its tiny --quick version and prints its table."""
import subprocess
import sys

import pytest

from conftest import ROOT

EXPECTED = {  # script -> lines its table must hold
    "sampling_pixelcnn.py": ["same draws on both paths for the first 192 sub-pixels of every image: True",
                             "naive", "cached"],
    "sampling_wavenet.py": ["naive", "torch", "numba"],
    "training.py": ["matrix-multiply peak", "naive (original)", "this project", "this, --amp",
                    "roofline"],
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_benchmark_runs_quick(script):
    result = subprocess.run([sys.executable, f"bench/{script}", "--quick"], capture_output=True,
                            text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for text in EXPECTED[script]:
        assert text in result.stdout
