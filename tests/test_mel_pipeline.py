"""The log-mel vocoder end to end (issue 13): preprocess.py --mel, train_wavenet.py on its folder and
infer_wavenet.py --mel, run as a user would on small noise recordings.

The model side (causality, the features' reach, every generation path, learning) is in
tests/test_local_conditioning.py; here: the frames preprocess stores are those inference computes,
windows carry the frames of their own samples, and the scripts say what they do and refuse bad input
in one line.
"""

import contextlib
import io
import json
import math
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
from helpers import (
    LAYERS,
    RATE,
    ROOT,
    STACKS,
    TARGET,
    TINY_CHUNKS,
    TINY_WAVENET,
    assert_one_line_error,
    read_log,
    run_main,
)

from wavenet import checkpoint, files, receptive_field
from wavenet.audio import load_audio, mu_law_encode
from wavenet.errors import UserError
from wavenet.features import MelSettings, log_mel, read_feature_file, recording_frames, stored_settings
from wavenet.windows import AudioWindows

BANDS, HOP = 8, 40  # TARGET (64) is not a whole number of hops: preprocess rounds it up to 80
ROUNDED = -(-TARGET // HOP) * HOP
FIELD = receptive_field(STACKS, LAYERS)
# samples of each recording at RATE: neither lead-in + samples nor samples is a whole number of hops
NATIVE_SAMPLES = 4811  # a file at RATE
NATIVE_FRAMES = math.ceil(NATIVE_SAMPLES / HOP) + 1  # what log_mel gives for it
OTHER_RATE, OTHER_SAMPLES = 16000, 7322  # a file preprocess resamples to RATE
MEL = ["--mel", str(BANDS), "--mel_hop", str(HOP)]
TRAIN = [*TINY_WAVENET, "-b", "16", "-e", "1"]


def write_noise(path, samples, rate, seed):
    """Gaussian noise (std 0.2) as 16-bit PCM: no two windows of it hold the same codes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.clip(0.2 * np.random.default_rng(seed).standard_normal(samples), -1, 1)
    sf.write(str(path), x, rate, subtype="PCM_16")


def quiet(script, argv):
    """run_main with the script's stdout captured -> (exit status, stdout)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        status = run_main(script, argv)
    return status, out.getvalue()


@pytest.fixture(scope="module")
def vocoder(tmp_path_factory):
    """One corpus preprocessed with --mel and the runs trained on it, {name: path or printed text}:

    native, other: recordings at RATE and at OTHER_RATE (speaker folder spk); data: both preprocessed
    with MEL for TINY_WAVENET; pre_out: what preprocess printed; cond, plain: -e 1 runs on data,
    locally conditioned and --no_local_conditioning; cond_out, plain_out: what they printed.
    """
    tmp = tmp_path_factory.mktemp("vocoder")
    native, other = tmp / "audio" / "spk" / "native.wav", tmp / "audio" / "spk" / "other.wav"
    write_noise(native, NATIVE_SAMPLES, RATE, seed=1)
    write_noise(other, OTHER_SAMPLES, OTHER_RATE, seed=2)
    paths = {name: str(tmp / name) for name in ("data", "cond", "plain")}
    status, pre_out = quiet(
        "preprocess.py", ["--data", str(tmp / "audio"), "--output", paths["data"], *TINY_CHUNKS, "--workers", "1", *MEL]
    )
    assert status == 0
    status, cond_out = quiet("train_wavenet.py", [*TRAIN, "-d", paths["data"], "-o", paths["cond"]])
    assert status == 0
    status, plain_out = quiet(
        "train_wavenet.py", [*TRAIN, "-d", paths["data"], "-o", paths["plain"], "--no_local_conditioning"]
    )
    assert status == 0
    return {
        **paths,
        "tmp": str(tmp),
        "native": str(native),
        "other": str(other),
        "pre_out": pre_out,
        "cond_out": cond_out,
        "plain_out": plain_out,
    }


def folder_meta(data):
    with open(os.path.join(data, "vctk_meta.json")) as f:
        return json.load(f)


def stored_frames_by_length(data):
    """{samples of a recording (lead-in included): its stored frames} from vctk_features.npy, read as corpus.py
    documents it: recording after recording, MelSettings.frames_for(rows * chunk_length) frames each."""
    meta = folder_meta(data)
    features = np.load(os.path.join(data, "vctk_features.npy"), mmap_mode="r")
    recordings = np.load(os.path.join(data, "vctk_recordings.npy"))
    settings, L = MelSettings.from_dict(meta["features"]), meta["chunk_length"]
    counts = [settings.frames_for(-(-int(n) // L) * L) for n in recordings]
    assert sum(counts) == len(features)
    bounds = np.cumsum([0, *counts])
    return {int(n): features[a:b] for n, a, b in zip(recordings, bounds[:-1], bounds[1:])}


def test_preprocess_rounds_the_target_length_up_to_whole_hops_and_says_so(vocoder):
    meta = folder_meta(vocoder["data"])
    assert f"--target_length {TARGET} rounded up to {ROUNDED}: {ROUNDED // HOP} hops of {HOP}" in vocoder["pre_out"]
    assert meta["chunk_length"] == FIELD + ROUNDED
    assert "log-mel features: 8 bands, hop 40 samples (5 ms)" in vocoder["pre_out"], vocoder["pre_out"]
    stored = meta["features"]
    assert (stored["rate"], stored["bands"], stored["hop"], stored["lead_in"]) == (RATE, BANDS, HOP, FIELD)


@pytest.mark.parametrize("name", ["native", "other"])
def test_stored_frames_are_the_frames_inference_computes(vocoder, name):
    """Exactly equal (float32 bit for bit), for a file at the corpus rate and for one preprocess resampled."""
    meta = folder_meta(vocoder["data"])
    mel, L = meta["features"], meta["chunk_length"]
    samples = load_audio(vocoder[name], RATE)
    assert len(samples) == (NATIVE_SAMPLES if name == "native" else OTHER_SAMPLES * RATE // OTHER_RATE)
    stored = stored_frames_by_length(vocoder["data"])[FIELD + len(samples)]
    inferred = recording_frames(samples, mel)  # what infer_wavenet.py --mel FILE.wav computes
    assert len(inferred) == math.ceil((FIELD + len(samples)) / HOP) + 1 <= len(stored)
    assert np.array_equal(stored[: len(inferred)], inferred)
    # the frames after them cover the silence that pads the last chunk: those of the whole padded stream
    stream = np.zeros(-(-(FIELD + len(samples)) // L) * L, np.float32)
    stream[FIELD : FIELD + len(samples)] = samples
    assert np.array_equal(stored, log_mel(stream, MelSettings.from_dict(mel)))


def test_meta_holds_the_statistics_of_the_stored_frames(vocoder):
    mel = folder_meta(vocoder["data"])["features"]
    features = np.load(os.path.join(vocoder["data"], "vctk_features.npy")).astype(np.float64)
    assert np.allclose(mel["mean"], features.mean(0), atol=1e-4)
    assert np.allclose(mel["std"], features.std(0), atol=1e-4)


@pytest.mark.parametrize("name", ["native", "other"])
def test_a_window_carries_its_recordings_frames_from_its_start_on(vocoder, name):
    """Windows inside a recording: their frames are the recording's frames from window start / hop on,
    normalised per band, frames_for(chunk_length) of them."""
    ds = AudioWindows(vocoder["data"])
    mel, L = ds.mel, ds.chunk_length
    samples = load_audio(vocoder[name], RATE)
    frames = recording_frames(samples, mel).astype(np.float64)
    normalised = (frames - np.array(mel["mean"])) / np.array(mel["std"])
    stream = mu_law_encode(np.concatenate([np.zeros(FIELD, np.float32), samples]))
    starts = np.lib.stride_tricks.sliding_window_view(stream, L)
    checked = 0
    for i in range(len(ds)):
        codes, _, window_frames = ds[i]
        found = np.flatnonzero((starts == codes.numpy()).all(1))
        if len(found) != 1 or found[0] == 0 or found[0] + L >= len(stream):
            continue  # another recording's window, or the first or last of this one
        start = int(found[0])
        assert start % HOP == 0, start
        assert window_frames.shape == (BANDS, math.ceil(L / HOP) + 1)
        expected = normalised[start // HOP : start // HOP + window_frames.shape[1]].T
        assert np.allclose(window_frames.numpy(), expected, atol=1e-5), (i, start)
        checked += 1
    assert checked >= len(samples) // ROUNDED - 3, checked  # every window but the first and the last


def newest_snapshot(out):
    return checkpoint.load(files.newest(out, "wavenet_"))


def test_training_conditions_on_the_folders_features_and_the_snapshot_keeps_them(vocoder):
    printed = vocoder["cond_out"]
    assert f"local conditioning on {BANDS} log-mel bands, hop {HOP} samples (5 ms)" in printed, printed
    snapshot = newest_snapshot(vocoder["cond"])
    assert (snapshot["config"]["cin_channels"], snapshot["config"]["hop_length"]) == (BANDS, HOP)
    assert snapshot["meta"]["features"] == folder_meta(vocoder["data"])["features"]


def test_no_local_conditioning_trains_an_unconditioned_model(vocoder):
    printed = vocoder["plain_out"]
    assert "no local conditioning (--no_local_conditioning)" in printed, printed
    assert "local conditioning on" not in printed
    snapshot = newest_snapshot(vocoder["plain"])
    assert (snapshot["config"]["cin_channels"], snapshot["config"]["hop_length"]) == (0, 0)
    assert snapshot["meta"]["features"] is None


def test_a_conditioned_run_resumes_and_continues_its_log(vocoder, tmp_path):
    out = tmp_path / "cond"
    shutil.copytree(vocoder["cond"], out)
    first = read_log(out)
    status, printed = quiet(
        "train_wavenet.py",
        [*TINY_WAVENET, "-b", "16", "-e", "2", "-d", vocoder["data"], "-o", str(out), "-r", str(out)],
    )
    assert status == 0
    assert f"local conditioning on {BANDS} log-mel bands" in printed
    log = read_log(out)
    assert len(first) == 1 and len(log) == 2 and log[0] == first[0], log
    assert log[1]["epoch"] == first[0]["epoch"] + 1 and log[1]["iteration"] > first[0]["iteration"], log
    assert math.isfinite(log[1]["val_nll"])
    snapshot = checkpoint.load(checkpoint.resolve(str(out), "snapshot_iter_"))
    assert snapshot["config"]["cin_channels"] == BANDS and snapshot["meta"]["features"]["hop"] == HOP


def test_tensorboard_clip_of_a_vocoder_resynthesises_the_first_validation_recording(vocoder, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = str(tmp_path / "tb")
    status, _ = quiet("train_wavenet.py", [*TRAIN, "-d", vocoder["data"], "-o", out, "--tensorboard"])
    assert status == 0
    events = EventAccumulator(out, size_guidance={"audio": 0})
    events.Reload()
    (clip,) = events.Audio("sample/audio")
    # at most a second; these recordings are shorter: as long as one recording's frames cover
    covered = {min(RATE, (len(frames) - 1) * HOP) for frames in stored_frames_by_length(vocoder["data"]).values()}
    assert clip.sample_rate == RATE and clip.length_frames in covered, (clip.length_frames, covered)


def test_amp_trains_a_conditioned_model(vocoder, tmp_path):
    out = str(tmp_path / "amp")
    status, printed = quiet("train_wavenet.py", [*TRAIN, "-d", vocoder["data"], "-o", out, "--amp"])
    assert status == 0
    assert f"local conditioning on {BANDS} log-mel bands" in printed
    assert all(math.isfinite(r["train_nll"]) and math.isfinite(r["val_nll"]) for r in read_log(out))
    assert newest_snapshot(out)["config"]["cin_channels"] == BANDS


def infer(vocoder, out, *flags):
    """infer_wavenet.py on the conditioned run; the samples of its one output file."""
    status, _ = quiet("infer_wavenet.py", ["-m", vocoder["cond"], "-o", str(out), "--count", "1", *flags])
    assert status == 0
    audio, rate = sf.read(os.path.join(out, "sample_0.wav"))
    assert rate == RATE
    return audio


def test_resynthesising_a_recording_gives_its_length(vocoder, tmp_path):
    audio = infer(vocoder, tmp_path / "wav", "--mel", vocoder["native"])
    assert len(audio) == len(load_audio(vocoder["native"], RATE)) == NATIVE_SAMPLES
    # at another rate with --mel_resample: resampled as preprocess.py does, so its length at RATE
    audio = infer(vocoder, tmp_path / "other", "--mel", vocoder["other"], "--mel_resample")
    assert len(audio) == len(load_audio(vocoder["other"], RATE)) == OTHER_SAMPLES * RATE // OTHER_RATE


def test_a_feature_file_gives_frames_minus_one_hops_and_a_seed_fixes_the_audio(vocoder, tmp_path):
    settings = MelSettings.from_dict(newest_snapshot(vocoder["cond"])["meta"]["features"])
    frames = log_mel(load_audio(vocoder["native"], RATE), settings)
    np.save(tmp_path / "native.npy", frames)
    np.save(tmp_path / "reversed.npy", np.ascontiguousarray(frames[::-1]))  # as many frames, other values
    first = infer(vocoder, tmp_path / "a", "--mel", str(tmp_path / "native.npy"), "--seed", "3")
    assert len(first) == (len(frames) - 1) * HOP
    again = infer(vocoder, tmp_path / "b", "--mel", str(tmp_path / "native.npy"), "--seed", "3")
    assert (tmp_path / "a" / "sample_0.wav").read_bytes() == (tmp_path / "b" / "sample_0.wav").read_bytes()
    assert np.array_equal(first, again)
    # the frames steer the audio: other frames, the same seed, other audio
    steered = infer(vocoder, tmp_path / "c", "--mel", str(tmp_path / "reversed.npy"), "--seed", "3")
    assert len(steered) == len(first) and not np.array_equal(steered, first)


@pytest.fixture(scope="module")
def bad(vocoder):
    """Bad input beside the vocoder's runs, {name: path}: feature files, and data folders whose features
    and codes disagree in length or whose meta file's "features" is malformed."""
    tmp = vocoder["tmp"]
    good = log_mel(load_audio(vocoder["native"], RATE), MelSettings.from_dict(folder_meta(vocoder["data"])["features"]))
    nan = good.copy()
    nan[5, 3] = np.nan
    arrays = {
        "bands": good[:, :-1],
        "ints": np.round(good).astype(np.int64),
        "ndim": good[None],
        "nan": nan,
        "half": good.astype(np.float16),
        "objects": np.array([good, None], dtype=object),  # np.save pickles it
    }
    paths = {}
    for name, array in arrays.items():
        paths[name] = os.path.join(tmp, f"{name}.npy")
        np.save(paths[name], array, allow_pickle=True)
    paths["random"] = os.path.join(tmp, "random.npy")
    with open(paths["random"], "wb") as f:
        f.write(np.random.default_rng(0).bytes(1000))
    paths["npz"] = os.path.join(tmp, "npz.npy")  # np.savez's zip file under a .npy name
    with open(paths["npz"], "wb") as f:
        np.savez(f, frames=good)
    paths["torn"] = os.path.join(tmp, "torn.npy")  # cut short: the header promises more frames
    np.save(paths["torn"], good)
    os.truncate(paths["torn"], os.path.getsize(paths["torn"]) - 4 * BANDS)
    paths["short_features"] = os.path.join(tmp, "short_features")
    shutil.copytree(vocoder["data"], paths["short_features"])
    features = np.load(os.path.join(vocoder["data"], "vctk_features.npy"))
    np.save(os.path.join(paths["short_features"], "vctk_features.npy"), features[:-1])  # one frame short
    paths["bad_meta"] = os.path.join(tmp, "bad_meta")
    shutil.copytree(vocoder["data"], paths["bad_meta"])
    meta = folder_meta(vocoder["data"])
    meta["features"]["std"] = meta["features"]["std"][:-1]  # one band short
    with open(os.path.join(paths["bad_meta"], "vctk_meta.json"), "w") as f:
        json.dump(meta, f)
    return {**vocoder, **paths}


INFER_COND = ["-m", "{cond}", "-o", "{tmp}/bad_samples", "--count", "1"]
PRE = ["--data", "{tmp}/audio", "--output", "{tmp}/bad_pre", *TINY_CHUNKS, "--workers", "1"]

# (id, script, argv ({name} from the bad fixture), fragment the error line must hold)
CASES = [
    (
        "npy-bands",
        "infer_wavenet.py",
        [*INFER_COND, "--mel", "{bands}"],
        f"holds float32 ({NATIVE_FRAMES}, {BANDS - 1})",
    ),
    ("npy-int", "infer_wavenet.py", [*INFER_COND, "--mel", "{ints}"], "holds int64"),
    ("npy-ndim", "infer_wavenet.py", [*INFER_COND, "--mel", "{ndim}"], f"holds float32 (1, {NATIVE_FRAMES}, {BANDS})"),
    ("npy-nan", "infer_wavenet.py", [*INFER_COND, "--mel", "{nan}"], "NaN or infinite"),
    *(
        (
            f"npy-{name}",
            "infer_wavenet.py",
            [*INFER_COND, "--mel", f"{{{name}}}"],
            f"is not a .npy array of numbers (pickled objects are never loaded); pass log-mel frames (frames, {BANDS}) "
            "float32 or float64 as wavenet.features.log_mel writes them",
        )
        for name in ("random", "objects", "npz")
    ),
    (
        "npy-half",
        "infer_wavenet.py",
        [*INFER_COND, "--mel", "{half}"],
        f"holds float16 ({NATIVE_FRAMES}, {BANDS}); the model needs log-mel frames (frames, {BANDS}) float32 or "
        "float64",
    ),
    ("npy-torn", "infer_wavenet.py", [*INFER_COND, "--mel", "{torn}"], "cannot read it as a .npy array ("),
    # a missing file: the same words for a recording and for frames
    *(
        (
            f"missing-{kind}",
            "infer_wavenet.py",
            [*INFER_COND, "--mel", f"{{tmp}}/gone.{kind}"],
            f"gone.{kind}: no such file",
        )
        for kind in ("wav", "npy")
    ),
    (
        "mel-unconditioned",
        "infer_wavenet.py",
        ["-m", "{plain}", "-o", "{tmp}/bad_samples", "--count", "1", "--mel", "{native}"],
        "has no local conditioning; drop --mel",
    ),
    ("no-mel", "infer_wavenet.py", INFER_COND, f"is conditioned on {BANDS} log-mel bands: pass --mel"),
    ("mel-length", "infer_wavenet.py", [*INFER_COND, "--mel", "{native}", "--length", "100"], "drop --length"),
    ("mel-prime", "infer_wavenet.py", [*INFER_COND, "--mel", "{native}", "--prime", "{native}"], "drop --prime"),
    (
        "mel-other-rate",
        "infer_wavenet.py",
        [*INFER_COND, "--mel", "{other}"],
        f"is at {OTHER_RATE:,} Hz but the model was trained on {RATE:,} Hz features",
    ),
    (
        "features-codes-disagree",
        "train_wavenet.py",
        [*TRAIN, "-d", "{short_features}", "-o", "{tmp}/bad_run"],
        "the features and codes disagree in length",
    ),
    (
        "meta-features-malformed",
        "train_wavenet.py",
        [*TRAIN, "-d", "{bad_meta}", "-o", "{tmp}/bad_run"],
        "'features' should be the log-mel settings",
    ),
    (
        "pre-too-many-bands",
        "preprocess.py",
        [*PRE, "--mel", "80", "--mel_hop", "10", "--mel_window", "10"],
        "band(s) without a frequency bin; pass fewer bands to --mel or a longer --mel_window",
    ),
    ("pre-hop-over-window", "preprocess.py", [*PRE, "--mel", "8", "--mel_window", "10"], "never be analysed"),
    ("pre-absurd-bands", "preprocess.py", [*PRE, "--mel", "100000000"], "pass 1 to 512 bands"),
    ("pre-absurd-window", "preprocess.py", [*PRE, "--mel", "8", "--mel_window", "1000000000"], "longer than a second"),
    ("pre-hop-without-mel", "preprocess.py", [*PRE, "--mel_hop", "40"], "pass --mel N too"),
]


@pytest.mark.parametrize("script, argv, fragment", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_error(bad, script, argv, fragment, capsys, monkeypatch):
    status = run_main(script, [a.format(**bad) for a in argv], monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, fragment)
    assert not os.path.exists(os.path.join(bad["tmp"], "bad_samples", "sample_0.wav"))
    assert not os.path.exists(os.path.join(bad["tmp"], "bad_pre"))  # refused before anything was written


class Unpickled:
    """Unpickling one creates the file `path`: a trace that a file's pickle was loaded."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_feature_file_of_pickled_objects_is_never_unpickled(tmp_path):
    stored = stored_settings(MelSettings.for_rate(RATE, BANDS, HOP), [0.0] * BANDS, [1.0] * BANDS, 0)
    trace = tmp_path / "unpickled"
    np.save(tmp_path / "objects.npy", np.array([Unpickled(str(trace)), 1.0], dtype=object), allow_pickle=True)
    assert not trace.exists()
    with pytest.raises(UserError, match=r"is not a \.npy array of numbers \(pickled objects are never loaded\)"):
        read_feature_file(str(tmp_path / "objects.npy"), stored)
    assert not trace.exists()
    # a good file beside it is read: the refusal is the pickle's, not the folder's
    np.save(tmp_path / "frames.npy", np.zeros((3, BANDS), np.float64))
    frames, lead_in, samples = read_feature_file(str(tmp_path / "frames.npy"), stored)
    assert frames.shape == (BANDS, 3) and frames.dtype == np.float32 and (lead_in, samples) == (0, None)


@pytest.mark.slow  # a subprocess of its own: out of CI for time (run with -m slow)
def test_too_many_bands_prints_only_the_error_line(bad):
    """As a subprocess, where nothing captures warnings: the refusal is the one line on stderr."""
    done = subprocess.run(
        [sys.executable, os.path.join(ROOT, "preprocess.py"), *[a.format(**bad) for a in PRE], "--mel", "80"]
        + ["--mel_hop", "10", "--mel_window", "10"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert_one_line_error(done.returncode, done.stderr, "without a frequency bin")
    assert [line for line in done.stderr.splitlines() if line.strip()] == [done.stderr.strip()], done.stderr
