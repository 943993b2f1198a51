"""The benchmark scripts keep working: each runs its tiny --quick version and prints its whole table.

Every expected line is matched whole, numbers included, so a row that goes missing, a column
that stops being a number, or a path whose draws stop matching the others fails the test.
Speeds are not asserted: the quick models are too small, and the machine is shared.
"""

import re
import subprocess
import sys

import pytest
from conftest import ROOT

NUM = r"[\d,]+(?:\.\d+)?(?:e[+-]\d+)?"  # a number as the tables print it: 763, 14,312.5, 5.28e-05

EXPECTED = {  # script -> patterns, each of which some whole line of its output must match
    "sampling_pixelcnn.py": [
        rf"naive +4 +{NUM} +{NUM} +{NUM} +1x +{NUM}  measured",
        rf"cached +4 +{NUM} +{NUM} +{NUM} +{NUM}x +{NUM}  measured \(peak before the naive run\)",
        # the cached path draws what the original's loop draws from the same seed
        r"same draws on both paths for the first 192 sub-pixels of every image: True",
    ],
    "sampling_wavenet.py": [
        rf"naive \(original\), extrapolated +1 +1 +{NUM} +{NUM} +1x",
        rf"torch incremental +1 +1 +{NUM} +{NUM} +{NUM}x",
        rf"numba +1 +1 +{NUM} +{NUM} +{NUM}x",
        rf"numba +10 +2 +{NUM} +{NUM} +{NUM}x",
        # naive, torch and numba draw the same codes from the same seed
        r"same draws on every path \(naive: first 2, torch: first 20 samples\): True",
    ],
    "training.py": [
        rf"matrix-multiply peak: {NUM} GFLOP/s fp32, {NUM} GFLOP/s bf16",
        *(
            rf"{model} +{re.escape(method)} +{NUM} {unit} +{ratio}x +{NUM}GB +{NUM} +{NUM} +{NUM}%"
            for model, unit in (("pixelcnn", "images/s"), ("wavenet", "scored samples/s"))
            for method, ratio in (("naive (original)", r"1\.00"), ("this project", NUM), ("this, --amp", NUM))
        ),
    ],
}


@pytest.mark.parametrize("script", sorted(EXPECTED))
def test_benchmark_runs_quick(script):
    result = subprocess.run(
        [sys.executable, f"bench/{script}", "--quick"], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for pattern in EXPECTED[script]:
        assert any(re.fullmatch(pattern, line) for line in lines), f"no line matches {pattern!r}:\n{result.stdout}"
