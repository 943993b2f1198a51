"""Bad input to the five scripts: one line `error: ...` naming the problem and the fix, exit status 2,
no traceback.

Every row of CASES runs in this process through cli.run, as `python SCRIPT.py` would run it (fast);
a few rows, and all of them under `pytest -m slow`, also run as real subprocesses.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from helpers import (
    LAYERS,
    RATE,
    ROOT,
    STACKS,
    TARGET,
    TINY_CHUNKS,
    TINY_PIXELCNN,
    TINY_WAVENET,
    TONE_FORMATS,
    assert_one_line_error,
    run_main,
    write_tone,
)

from wavenet import checkpoint, preprocessing, receptive_field, windows

# an unreachable proxy: MNIST/CIFAR downloads fail at once, also on a machine with internet
OFFLINE = {"http_proxy": "http://127.0.0.1:9", "https_proxy": "http://127.0.0.1:9", "no_proxy": ""}


@pytest.fixture(scope="module")
def inputs(world, tmp_path_factory):
    """The files and folders the cases point at, {name: path}: conftest.py's world (its tiny trained models)
    and bad input beside it. {tmp} is a folder of this module's own."""
    tmp = tmp_path_factory.mktemp("errors")
    field = receptive_field(STACKS, LAYERS)
    preprocessing.preprocess(world["tones"], str(tmp / "data16k"), 2 * RATE, field + TARGET, receptive_field=field)
    (tmp / "empty").mkdir()
    (tmp / "empty" / "notes.txt").write_text("no audio here")
    (tmp / "notaudio").mkdir()
    (tmp / "notaudio" / "x.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    good = pathlib.Path(world["tones"], "p225", "t0.wav").read_bytes()
    (tmp / "truncated").mkdir()
    (tmp / "truncated" / "x.wav").write_bytes(good[: len(good) // 3])
    write_tone(tmp / "short" / "s.wav", 0.001, RATE)
    # a snapshot of an older version of the model: a weight this version does not have
    old = checkpoint.load(world["pix_model"])
    old["model"]["retired_layer.weight"] = torch.zeros(1)
    checkpoint.save(str(tmp / "old_layout"), old)
    whole = pathlib.Path(world["pix_model"]).read_bytes()
    (tmp / "torn").write_bytes(whole[: len(whole) // 2])  # what a copy cut short leaves
    # a trainer snapshot taken inside an epoch (5 of 23 batches done)
    mid = checkpoint.load(checkpoint.resolve(world["pix"], "snapshot_iter_"))
    mid["state"].update(iteration=5, epoch=0, batch_in_epoch=5)
    (tmp / "pix_mid").mkdir()
    checkpoint.save(str(tmp / "pix_mid" / "snapshot_iter_5"), mid)
    return {**world, "tmp": str(tmp), **{name: str(tmp / name) for name in os.listdir(tmp)}}


PRE = ["--output", "{tmp}/pre_out", "--workers", "1", *TINY_CHUNKS]
PIX = [*TINY_PIXELCNN, "-b", "64", "-e", "2", "-o", "{tmp}/pix_resumed"]
WN = [*TINY_WAVENET, "-b", "16", "-e", "2", "-d", "{data}", "-o", "{tmp}/wn_resumed"]

# (id, script, argv ({name} from the inputs fixture), fragment the error line must hold, also as a subprocess)
CASES = [
    # preprocess.py
    (
        "pre-data-missing",
        "preprocess.py",
        ["--data", "{tmp}/missing", *PRE],
        "data folder '{tmp}/missing' not found",
        True,
    ),
    ("pre-no-audio", "preprocess.py", ["--data", "{empty}", *PRE], "holds no .wav or .flac files", False),
    ("pre-not-audio", "preprocess.py", ["--data", "{notaudio}", *PRE], "could be read as audio", False),
    ("pre-truncated", "preprocess.py", ["--data", "{truncated}", *PRE], "could be read as audio", False),
    ("pre-all-too-short", "preprocess.py", ["--data", "{short}", *PRE], "1 are shorter than one chunk", False),
    ("pre-rate-0", "preprocess.py", ["--data", "{tones}", *PRE, "--rate", "0"], "--rate: must be a positive", False),
    (
        "pre-rate-negative",
        "preprocess.py",
        ["--data", "{tones}", *PRE, "--rate", "-8000"],
        "--rate: must be a positive",
        False,
    ),
    (
        "pre-workers-0",
        "preprocess.py",
        ["--data", "{tones}", *PRE, "--workers", "0"],
        "--workers: must be a positive",
        False,
    ),
    (
        "pre-output-unwritable",
        "preprocess.py",
        ["--data", "{tones}", *PRE, "--output", "{file}/out"],
        "cannot create the folder",
        False,
    ),
    # train.py
    ("train-dataset-unknown", "train.py", ["--dataset", "nope"], "--dataset 'nope' is unknown; choose one of", True),
    (
        "train-mnist-offline",
        "train.py",
        ["--dataset", "mnist", "--data_dir", "{tmp}/no_mnist"],
        "could not download MNIST",
        False,
    ),
    (
        "train-cifar-offline",
        "train.py",
        ["--dataset", "cifar", "--data_dir", "{tmp}/no_cifar"],
        "could not download CIFAR-10",
        False,
    ),
    ("train-levels-1", "train.py", [*PIX, "--levels", "1"], "--levels 1: pick a number of levels from 2 to 256", False),
    ("train-workers-negative", "train.py", [*PIX, "--workers", "-1"], "--workers: must be zero or a positive", False),
    ("train-batchsize-0", "train.py", [*PIX, "-b", "0"], "--batchsize/-b: must be a positive", False),
    (
        "train-out-unwritable",
        "train.py",
        [*PIX, "-o", "{file}/out"],
        "--out '{file}/out': cannot create the folder",
        False,
    ),
    ("train-gpu-absent", "train.py", [*PIX, "--gpu", "99"], "--gpu 99:", False),
    (
        "train-resume-other-arch",
        "train.py",
        [*PIX, "-d", "16", "--resume", "{pix}"],
        "--hidden_dim 16 contradicts",
        False,
    ),
    (
        "train-resume-other-levels",
        "train.py",
        [*PIX, "--levels", "8", "--resume", "{pix}"],
        "--levels 8 contradicts",
        False,
    ),
    (
        "train-resume-wavenet",
        "train.py",
        [*PIX, "--resume", "{wn}"],
        "is a WaveNet snapshot, not a GatedPixelCNN one; resume it with train_wavenet.py",
        False,
    ),
    (
        "train-resume-model-snapshot",
        "train.py",
        [*PIX, "--resume", "{pix_model}"],
        "is a model snapshot, not a trainer snapshot",
        False,
    ),
    ("train-resume-not-snapshot", "train.py", [*PIX, "--resume", "{file}"], "is not a readable snapshot", False),
    ("train-resume-missing", "train.py", [*PIX, "--resume", "{tmp}/missing"], "not found", False),
    (
        "train-resume-empty-folder",
        "train.py",
        [*PIX, "--resume", "{empty}"],
        "holds no snapshot_iter_<N> snapshot",
        False,
    ),
    (
        "train-resume-mid-epoch-other-batchsize",
        "train.py",
        [*PIX, "-b", "32", "--resume", "{pix_mid}"],
        "stopped inside an epoch of a run with --batchsize 64; pass --batchsize 64",
        False,
    ),
    (
        "train-resume-mid-epoch-other-seed",
        "train.py",
        [*PIX, "--seed", "1", "--resume", "{pix_mid}"],
        "stopped inside an epoch of a run with --seed 0; pass --seed 0",
        False,
    ),
    # train_wavenet.py
    ("wn-data-missing", "train_wavenet.py", [*WN, "-d", "{tmp}/missing"], "not found; run preprocess.py --data", False),
    (
        "wn-data-not-preprocessed",
        "train_wavenet.py",
        [*WN, "-d", "{empty}"],
        "holds no vctk_* files; run preprocess.py",
        False,
    ),
    (
        "wn-data-other-field",
        "train_wavenet.py",
        [*WN, "--layers_num", "5"],
        "preprocessed for a receptive field of 17",
        False,
    ),
    (
        "wn-data-other-levels",
        "train_wavenet.py",
        [*WN, "--levels", "16"],
        "holds codes of 256 mu-law levels, not 16",
        False,
    ),
    (
        "wn-workers-negative",
        "train_wavenet.py",
        [*WN, "--workers", "-2"],
        "--workers: must be zero or a positive",
        False,
    ),
    ("wn-out-unwritable", "train_wavenet.py", [*WN, "-o", "{file}/out"], "cannot create the folder", False),
    ("wn-gpu-absent", "train_wavenet.py", [*WN, "--gpu", "99"], "--gpu 99:", False),
    ("wn-resume-pixelcnn", "train_wavenet.py", [*WN, "--resume", "{pix}"], "resume it with train.py", False),
    (
        "wn-resume-other-arch",
        "train_wavenet.py",
        [*WN, "--hidden_dim", "16", "--resume", "{wn}"],
        "--hidden_dim 16 contradicts",
        False,
    ),
    (
        "wn-resume-other-rate",
        "train_wavenet.py",
        [*WN, "-d", "{data16k}", "--resume", "{wn}"],
        "was trained with rate 8000; this run has rate 16000",
        False,
    ),
    # infer.py
    ("infer-model-required", "infer.py", [], "the following arguments are required: --model/-m", False),
    ("infer-model-missing", "infer.py", ["-m", "{tmp}/missing"], "not found", False),
    ("infer-not-snapshot", "infer.py", ["-m", "{file}"], "is not a readable snapshot", False),
    (
        "infer-torn-snapshot",
        "infer.py",
        ["-m", "{torn}"],
        "is not a readable snapshot (not a complete PyTorch zip file)",
        False,
    ),
    (
        "infer-wavenet-snapshot",
        "infer.py",
        ["-m", "{wn_model}"],
        "{wn_model} is a WaveNet snapshot, not a GatedPixelCNN one; use infer_wavenet.py",
        False,
    ),
    ("infer-wavenet-folder", "infer.py", ["-m", "{wn}"], "no pixelcnn_<N>; use infer_wavenet.py", False),
    ("infer-old-layout", "infer.py", ["-m", "{old_layout}"], "weights do not fit this version's GatedPixelCNN", False),
    ("infer-contradicts-arch", "infer.py", ["-m", "{pix}", "-d", "16"], "--hidden_dim 16 contradicts", False),
    ("infer-contradicts-levels", "infer.py", ["-m", "{pix}", "--levels", "8"], "--levels 8 contradicts", False),
    ("infer-label-too-big", "infer.py", ["-m", "{pix}", "--label", "10"], "--label 10 is out of range", False),
    ("infer-label-negative", "infer.py", ["-m", "{pix}", "--label", "-1"], "--label -1 is out of range", False),
    ("infer-count-0", "infer.py", ["-m", "{pix}", "--count", "0"], "--count/-c: must be a positive", False),
    ("infer-height-0", "infer.py", ["-m", "{pix}", "--height", "0"], "--height: must be a positive", False),
    ("infer-width-negative", "infer.py", ["-m", "{pix}", "--width", "-1"], "--width: must be a positive", False),
    (
        "infer-output-unwritable",
        "infer.py",
        ["-m", "{pix}", "-o", "{file}/grid.png"],
        "is not an existing folder",
        False,
    ),
    ("infer-output-not-image", "infer.py", ["-m", "{pix}", "-o", "{tmp}/grid.txt"], "unknown image extension", False),
    ("infer-gpu-absent", "infer.py", ["-m", "{pix}", "--gpu", "99"], "--gpu 99:", False),
    # infer_wavenet.py
    ("winfer-model-required", "infer_wavenet.py", [], "the following arguments are required: --model/-m", False),
    (
        "winfer-pixelcnn-snapshot",
        "infer_wavenet.py",
        ["-m", "{pix_model}"],
        "{pix_model} is a GatedPixelCNN snapshot, not a WaveNet one; use infer.py",
        True,
    ),
    ("winfer-not-snapshot", "infer_wavenet.py", ["-m", "{file}"], "is not a readable snapshot", False),
    (
        "winfer-contradicts-arch",
        "infer_wavenet.py",
        ["-m", "{wn}", "--layers_num", "3"],
        "--layers_num 3 contradicts",
        False,
    ),
    (
        "winfer-contradicts-rate",
        "infer_wavenet.py",
        ["-m", "{wn}", "--rate", "16000"],
        "--rate 16000 contradicts",
        False,
    ),
    (
        "winfer-contradicts-levels",
        "infer_wavenet.py",
        ["-m", "{wn}", "--levels", "16"],
        "--levels 16 contradicts",
        False,
    ),
    (
        "winfer-label-unknown",
        "infer_wavenet.py",
        ["-m", "{wn}", "--label", "5"],
        "--label 5 is not a speaker of this model: use 0..1 or one of p225, p226",
        False,
    ),
    (
        "winfer-label-name",
        "infer_wavenet.py",
        ["-m", "{wn}", "--label", "p999"],
        "--label p999 is not a speaker",
        False,
    ),
    ("winfer-count-0", "infer_wavenet.py", ["-m", "{wn}", "--count", "0"], "--count/-c: must be a positive", False),
    ("winfer-length-0", "infer_wavenet.py", ["-m", "{wn}", "--length", "0"], "--length: must be a positive", False),
    ("winfer-rate-0", "infer_wavenet.py", ["-m", "{wn}", "--rate", "0"], "--rate: must be a positive", False),
    (
        "winfer-temperature-negative",
        "infer_wavenet.py",
        ["-m", "{wn}", "--temperature", "-1"],
        "--temperature -1.0: pass 0 or a positive",
        False,
    ),
    (
        "winfer-prime-not-audio",
        "infer_wavenet.py",
        ["-m", "{wn}", "--prime", "{notaudio}/x.wav"],
        "cannot read it as audio",
        False,
    ),
    (
        "winfer-output-unwritable",
        "infer_wavenet.py",
        ["-m", "{wn}", "-o", "{file}/out"],
        "cannot create the folder",
        False,
    ),
    ("winfer-gpu-absent", "infer_wavenet.py", ["-m", "{wn}", "--gpu", "99"], "--gpu 99:", False),
]


def fill(inputs, texts):
    return [text.format(**inputs) for text in texts]


@pytest.mark.parametrize("script,argv,fragment", [case[1:4] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_is_one_line_error(inputs, script, argv, fragment, capsys, monkeypatch):
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    status = run_main(script, fill(inputs, argv), monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, fragment.format(**inputs))


SUBPROCESS_CASES = [
    pytest.param(script, argv, fragment, id=case_id, marks=() if fast else (pytest.mark.slow,))
    for case_id, script, argv, fragment, fast in CASES
]


@pytest.mark.parametrize("script,argv,fragment", SUBPROCESS_CASES)
def test_bad_input_is_one_line_error_as_a_subprocess(inputs, script, argv, fragment):
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *fill(inputs, argv)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **OFFLINE},
        timeout=300,
    )
    assert_one_line_error(run.returncode, run.stderr, fragment.format(**inputs))


def test_short_files_are_skipped_and_counted_and_every_format_is_read(inputs, tmp_path, capsys):
    """8/16/24-bit, float, stereo and 8-48 kHz files all give chunks; one shorter than a chunk is counted."""
    import preprocess

    data = tmp_path / "mixed"
    shutil.copytree(inputs["tones"], data)
    shutil.copytree(inputs["short"], data / "p225", dirs_exist_ok=True)
    preprocess.main(["--data", str(data), *fill({**inputs, "tmp": str(tmp_path)}, PRE)])
    summary = capsys.readouterr().out.splitlines()[0]
    assert summary.startswith(f"read {len(TONE_FORMATS) + 1} of {len(TONE_FORMATS) + 1} files"), summary
    assert "skipped 1: 1 shorter than one chunk" in summary and "from 2 speaker(s)" in summary, summary
    chunks = windows.AudioWindows(str(tmp_path / "pre_out"))
    assert chunks.receptive_field == receptive_field(STACKS, LAYERS)
    # each tone is 0.3 s: 2400 samples at 8 kHz after a lead-in of one receptive field of silence;
    # windows of field + TARGET samples that start TARGET apart make TARGET of them targets each
    assert len(chunks) == len(TONE_FORMATS) * (int(0.3 * RATE) // TARGET)
    assert chunks.rate == RATE and chunks.speakers == ["p225", "p226"]
