"""Requests the scripts must refuse or survive (issue 12): absurd sizes refused up front with their estimate,
non-ASCII digits as --label, a log.json of the wrong shape, SIGTERM before training, the memory of loading
MNIST, progress bars in log files, and numba's threading layer beside torch's OpenMP.
"""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
import torch
from conftest import ROOT
from helpers import run_main

from wavenet import GatedPixelCNN, WaveNet, checkpoint, estimates, preprocessing, receptive_field, report
from wavenet.image_data import quantize, quantize_images
from wavenet.models import WaveNetConfig

MNIST = os.path.join(ROOT, "..", "shared", "data")


def one_line_error(status, stderr, fragment):
    """A user's mistake: exit status 2, no traceback, the last line the only `error:` line, holding `fragment`."""
    assert status == 2, stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert [line for line in lines if "error: " in line] == [lines[-1]], stderr
    assert fragment in lines[-1], lines[-1]


def run_script(capsys, script, argv):
    """Run SCRIPT.main(argv) through cli.run, as `python SCRIPT.py` does -> (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = run_main(script, argv)
    out, err = capsys.readouterr()
    return status, out, err


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory):
    """Untrained tiny snapshots (a Gated PixelCNN of 8x8 images, a WaveNet of speakers p225 and p226) and a
    corpus preprocessed for a 1 x 4 WaveNet: {name: path}."""
    tmp = tmp_path_factory.mktemp("limits")
    torch.manual_seed(0)
    pix = GatedPixelCNN(3, 4, 1, 4, 4, num_classes=10)
    meta = {"dataset": "digits", "levels": 4, "height": 8, "width": 8}
    checkpoint.save(str(tmp / "pixelcnn_1"), checkpoint.model_snapshot(pix, meta))
    wn = WaveNet(16, 4, 4, 1, 3, num_speakers=2)
    meta = {"rate": 8000, "levels": 16, "speakers": ["p225", "p226"], "receptive_field": wn.receptive_field}
    checkpoint.save(str(tmp / "wavenet_1"), checkpoint.model_snapshot(wn, {**meta, "target_length": 8}))
    for i, speaker in enumerate(("p225", "p226")):
        (tmp / "tones" / speaker).mkdir(parents=True)
        sf.write(str(tmp / "tones" / speaker / "t.wav"), 0.3 * np.sin(np.arange(4000) * (0.1 + 0.05 * i)), 8000)
    field = receptive_field(1, 4)
    preprocessing.preprocess(str(tmp / "tones"), str(tmp / "data"), 8000, field + 64, receptive_field=field)
    return {name: str(tmp / name) for name in ("pixelcnn_1", "wavenet_1", "data")} | {"tmp": str(tmp)}


# --- estimates from the config alone ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [(3, 8, 0, 4, 5, 0), (3, 8, 1, 8, 4, 10), (1, 6, 3, 5, 7, 3), (3, 32, 4, 16, 256, 10)],
)
def test_pixelcnn_parameter_count_matches_the_built_model(config):
    model = GatedPixelCNN(*config)
    assert estimates.pixelcnn_parameters(model.config) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    "config", [(256, 32, 32, 5, 10), (7, 8, 8, 1, 4, 2, 3), (16, 4, 6, 2, 3, 3, 0), (4, 2, 2, 1, 1, 1, 0)]
)
def test_wavenet_parameter_count_matches_the_built_model(config):
    model = WaveNet(*config)
    assert estimates.wavenet_parameters(model.config) == sum(p.numel() for p in model.parameters())


def test_estimates_of_absurd_configs_are_numbers_not_overflows():
    huge = WaveNetConfig(256, 32, 32, 5, 100_000)  # 2**99999 dilations: an int of 30,103 digits
    need = estimates.training_bytes(huge, 16)
    assert need > 10**30000
    assert estimates.format_bytes(need).startswith("10^")
    assert estimates.format_count(receptive_field(5, 100_000)).startswith("about 10^")


# --- absurd requests refused up front --------------------------------------------------------------------------


def test_absurd_generation_is_refused_with_its_estimate(capsys, snapshots, tmp_path):
    out = str(tmp_path / "wav")
    status, _, err = run_script(
        capsys, "infer_wavenet", ["-m", snapshots["wavenet_1"], "--length", "10" + "0" * 11, "-o", out]
    )
    one_line_error(status, err, "--count 10 x --length 1,000,000,000,000 (int64 codes) needs at least 160.0 TB")
    argv = ["-m", snapshots["wavenet_1"], "--length", "10000000", "--method", "naive", "-o", out]
    status, _, err = run_script(capsys, "infer_wavenet", argv)
    one_line_error(status, err, "with --method naive would take about")
    assert "over the limit of 7 days" in err
    assert not os.path.exists(out), "a refused request creates no --output folder"


def test_absurd_image_count_is_refused_before_allocating(capsys, snapshots, tmp_path):
    argv = ["-m", snapshots["pixelcnn_1"], "-c", "10000", "-o", str(tmp_path / "s.png")]
    status, _, err = run_script(capsys, "infer", argv)
    one_line_error(status, err, "-c 10000 (100,000,000 images of 8x8, --method cached) needs at least")
    assert "pass a smaller --count" in err


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["-d", "100000"], "(3,200,094,000,118 parameters, -b 16) needs at least 51.2 TB"),
        (["-n", "100000"], "(35,008,112,118 parameters, -b 16)"),
        (["-n", "10" + "0" * 20], "(about 10^26 parameters"),
    ],
)
def test_absurd_pixelcnn_is_refused_before_it_is_built(capsys, tmp_path, flags, fragment):
    out = str(tmp_path / "run")
    start = time.perf_counter()
    status, _, err = run_script(capsys, "train", ["--dataset", "digits", *flags, "-o", out])
    one_line_error(status, err, fragment)
    assert "make --hidden_dim (-d), --blocks_num (-n)" in err
    assert time.perf_counter() - start < 30, "refused before building anything"
    assert not os.path.exists(out)


@pytest.mark.parametrize(
    "flags, fragment",
    [
        (["--layers_num", "100000"], "a receptive field of about 10^30103 samples"),
        (["--hidden_dim", "100000"], "needs at least"),
    ],
)
def test_absurd_wavenet_is_refused_before_it_is_built(capsys, snapshots, tmp_path, flags, fragment):
    out = str(tmp_path / "run")
    status, _, err = run_script(capsys, "train_wavenet", ["-d", snapshots["data"], *flags, "-o", out])
    one_line_error(status, err, fragment)
    assert "--stacks_num (-s), --layers_num (-l)" in err
    assert not os.path.exists(out)


# --- --label in other scripts' digits --------------------------------------------------------------------------


def test_label_digits_of_other_scripts(capsys, snapshots, tmp_path):
    wav = ["-m", snapshots["wavenet_1"], "-c", "1", "--length", "4", "-o", str(tmp_path / "wav")]
    status, out, err = run_script(capsys, "infer_wavenet", [*wav, "--label", "\u0661"])  # Arabic-Indic one
    assert status == 0, err
    assert "speaker p226" in out
    status, _, err = run_script(capsys, "infer_wavenet", [*wav, "--label", "\u00b2"])  # superscript two
    one_line_error(status, err, "--label \u00b2 is not a speaker of this model")
    img = ["-m", snapshots["pixelcnn_1"], "-c", "1", "-o", str(tmp_path / "s.png")]
    status, _, err = run_script(capsys, "infer", [*img, "--label", "\u00b2"])
    one_line_error(status, err, "--label")
    status, _, err = run_script(capsys, "infer", [*img, "--label", "\u0663"])  # Arabic-Indic three: label 3
    assert status == 0, err


# --- plot_stats.py given a log.json of the wrong shape ---------------------------------------------------------


@pytest.mark.parametrize(
    "log, fragment",
    [
        ({"iteration": 1}, "it holds an object, not an array of records"),
        ([1, 2], "record 0 is a number, not an object"),
        ([{"iteration": 1, "stats": [1]}], 'record 0: "stats" is an array'),
        ([{"iteration": 1, "stats": {"w": {"data": {"percentiles": [1]}, "grad": None}}}], "7 percentiles"),
        ([{"stats": {"w": {"data": None}}}], "no numeric iteration"),
    ],
)
def test_plot_stats_refuses_a_log_of_the_wrong_shape(capsys, tmp_path, log, fragment):
    path = tmp_path / "log.json"
    path.write_text(json.dumps(log))
    status, _, err = run_script(capsys, "plot_stats", [str(path), "-o", str(tmp_path / "st")])
    one_line_error(status, err, f"{str(path)!r} is not a training log.json (")
    assert fragment in err


# --- SIGTERM before training -----------------------------------------------------------------------------------


def test_sigterm_before_training_is_one_line_and_leaves_no_empty_folder(tmp_path):
    out = str(tmp_path / "run")
    # SIGTERM arrives while the data loads, as a scheduler's would at any moment of the set-up
    code = f"""
import os, signal, sys
sys.path.insert(0, {ROOT!r})
import train
from wavenet import cli
real = train.load_images
def load(*args):
    os.kill(os.getpid(), signal.SIGTERM)
    return real(*args)
train.load_images = load
cli.run(lambda: train.main(["--dataset", "digits", "-d", "4", "-n", "1", "-o", {out!r}]))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == "terminated"
    assert not os.path.exists(out)


# --- memory of loading MNIST -----------------------------------------------------------------------------------


def test_quantize_images_is_quantize():
    pixels = torch.randint(
        0, 256, (2 * 1024 + 5, 3, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0)
    )
    for levels in (2, 7, 256):
        assert torch.equal(quantize_images(pixels, levels), quantize(pixels, levels).to(torch.uint8))


@pytest.mark.skipif(not os.path.exists(os.path.join(MNIST, "MNIST", "raw")), reason="real MNIST not in ../shared/data")
def test_loading_mnist_takes_little_more_memory_than_the_images():
    code = f"""
import resource, sys
sys.path.insert(0, {ROOT!r})
import torch
from wavenet.image_data import load_images
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
train, test = load_images("mnist", {MNIST!r}, True, 256), load_images("mnist", {MNIST!r}, False, 256)
print(len(train) + len(test), (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    images, grown = map(int, done.stdout.split())
    assert images == 70_000
    # the images are 55 MB of uint8 (grey, tiled to RGB as a view); int64 of the whole set tiled first was 3.3 GB
    assert grown < 300 * 10**6, f"loading MNIST grew the peak RSS by {grown / 1e6:.0f} MB"


# --- progress bars in log files --------------------------------------------------------------------------------


def test_progress_bar_in_a_log_is_whole_lines_at_most_every_interval(capsys, monkeypatch):
    monkeypatch.setattr(report, "LOG_INTERVAL", 0.2)
    capsys.readouterr()
    start = time.perf_counter()
    for _ in report.bar(range(60), desc="epoch 1/1", total=60):
        time.sleep(0.02)  # 1.2 s in all: some 6 lines, where a terminal would get 60 redraws
    elapsed = time.perf_counter() - start
    for _ in report.bar(range(3), desc="validation"):  # ends before the first interval: nothing
        pass
    err = capsys.readouterr().err
    assert "\r" not in err
    lines = err.splitlines()
    assert 1 <= len(lines) <= elapsed / 0.2 + 2, err
    assert all(line.startswith("epoch 1/1:") for line in lines), err
    assert "60/60" in lines[-1]


# --- numba's threading layer beside torch's OpenMP -------------------------------------------------------------


def test_generate_after_the_numba_kernel_is_as_fast_as_before():
    code = f"""
import os, sys, time
os.environ.pop("NUMBA_THREADING_LAYER", None)
sys.path.insert(0, {ROOT!r})
import torch
from wavenet import WaveNet
from wavenet.wavenet_sampling import generate
torch.manual_seed(0)
model = WaveNet(32, 8, 8, 2, 6)
def timed(method):
    start = time.perf_counter()
    generate(model, 2, 150, method=method, progress=False)
    return time.perf_counter() - start
before = [timed("torch") for _ in range(3)][1:]  # the first call warms torch up
timed("auto"), timed("numba")  # the compiled kernel (numba's pool starts here)
after = [timed("torch") for _ in range(2)]
import numba
print(min(before), min(after), numba.threading_layer())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    before, after, layer = done.stdout.split()
    # numba's "omp" layer beside torch's OpenMP made every later call 1.7x slower on an idle 2-core machine and
    # 5-40x slower on a busy one, where its pool's spinning threads take the cores torch waits for
    assert layer != "omp"
    assert float(after) < 3 * float(before), (
        f"torch generate took {before} s before the numba kernel ran, {after} s after"
    )
