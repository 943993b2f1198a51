"""The benchmark scripts keep working: each runs its tiny --quick version and prints its whole table.

Every expected line is matched whole, numbers included, so a row that goes missing, a column
that stops being a number, or a path whose draws stop matching the others fails the test.
Speeds are not asserted: the quick models are too small, and the machine is shared. Peak memory is:
each figure a pattern names `peak_gb` (a process that imported torch) or `own_gb` (a benchmark's own
process, which imports no torch) must lie within PLAUSIBLE_GB.
"""

import os
import re
import subprocess
import sys

import pytest
from conftest import ROOT

NUM = r"[\d,]+(?:\.\d+)?(?:e[+-]\d+)?"  # a number as the tables print it: 763, 14,312.5, 5.28e-05
PEAK = r"(?P<peak_gb>\d+\.\d+) ?GB"  # a peak RSS as the tables print it: 0.67GB, 0.89 GB
# importing torch alone peaks at ~0.5 GB on Linux, so a child's figure under 0.1 GB measured some other
# process; the quick models need little beyond that, so over 4 GB counts something else too (or a leak).
# A script that measures children imports no torch: its own peak bounds theirs from below (bench/peak_rss.py)
PLAUSIBLE_GB = {"peak_gb": (0.1, 4.0), "own_gb": (0.0, 0.1)}

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
            rf"{model} +{re.escape(method)} +{NUM} {unit} +{ratio}x +{PEAK} +{NUM} +{NUM} +{NUM}%"
            for model, unit in (("pixelcnn", "images/s"), ("wavenet", "scored samples/s"))
            for method, ratio in (("naive (original)", r"1\.00"), ("this project", NUM), ("this, --amp", NUM))
        ),
    ],
    "memory.py": [
        rf"import torch: +{PEAK}",
        rf"import torch; build an Adam optimizer: +{PEAK}",
        # train.py end to end with the small model on digits and on a synthetic CIFAR-10 in the official format
        *(rf"{re.escape(data)} +small +2 +{PEAK}  (yes|no)" for data in ("digits", "cifar (synthetic)")),
        r"this script's own peak: (?P<own_gb>\d+\.\d+) GB",
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
        match = next(filter(None, (re.fullmatch(pattern, line) for line in lines)), None)
        assert match, f"no line matches {pattern!r}:\n{result.stdout}"
        for name, value in match.groupdict().items():
            low, high = PLAUSIBLE_GB[name]
            assert low <= float(value) <= high, f"{name} {value} outside {low}..{high}: {match.group()!r}"


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="VmHWM is Linux's")
def test_a_child_reports_its_own_peak_not_its_parents():
    # a parent holding 300 MB starts a child that needs ~10 MB; the child's ru_maxrss would start at the
    # parent's peak (Linux keeps it across exec), its own_peak_bytes must not
    parent = """
import subprocess, sys
from peak_rss import own_peak_bytes
held = b"x" * (300 * 2**20)  # written, so resident
child = "from peak_rss import own_peak_bytes; print(own_peak_bytes())"
print(own_peak_bytes(), subprocess.run([sys.executable, "-c", child], capture_output=True, text=True).stdout)
"""
    env = {**os.environ, "PYTHONPATH": os.path.join(ROOT, "bench")}
    result = subprocess.run([sys.executable, "-c", parent], capture_output=True, text=True, timeout=60, env=env)
    assert result.returncode == 0, result.stderr
    parent_peak, child_peak = (int(n) for n in result.stdout.split())
    assert parent_peak >= 300 * 2**20
    assert child_peak < 100 * 2**20, f"the child's own peak, {child_peak / 2**20:.0f} MB, includes its parent's"


LJSPEECH = os.path.join(ROOT, "..", "shared", "data", "speech", "ljspeech")


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir(LJSPEECH), reason="needs the LJ Speech clips of ../shared/data")
def test_vocoder_benchmark_runs_quick_and_resumes_without_training_again(tmp_path):
    # about 90 s: preprocessing, two tiny trainings, resynthesis, Griffin-Lim, STOI and PESQ
    command = [sys.executable, "bench/vocoder.py", "--quick", "--data", LJSPEECH, "--out", str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    heads = r"clip +STOI wavenet +STOI G-L +PESQ wavenet +PESQ G-L +bits cond +bits uncond"
    assert any(re.fullmatch(heads, line) for line in result.stdout.splitlines()), result.stdout
    assert any(re.fullmatch(rf"mean(?: +{NUM}){{6}}", line) for line in result.stdout.splitlines()), result.stdout
    clip = sorted(os.listdir(LJSPEECH))[-1].rsplit(".", 1)[0]  # --quick holds out the last clip
    evaluations = sorted(os.listdir(tmp_path / "resynthesis"))
    assert evaluations and sorted(os.listdir(tmp_path / "resynthesis" / evaluations[-1] / clip)) == [
        "griffin_lim.wav",
        "log_mel.png",
        "sample_0.wav",
    ]
    assert (tmp_path / "curve.png").stat().st_size > 0
    logs = {name: (tmp_path / f"{name}.log").read_text() for name in ("conditioned", "unconditioned")}
    # a rerun finds the budget spent: it trains neither run again and redraws the curve
    again = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {name: (tmp_path / f"{name}.log").read_text() for name in logs} == logs
    assert "after" not in again.stdout
