"""Validation splits of WaveNet windows by recording (wavenet/splits.py): the share asked, sides that never
read the same sample, every speaker kept for training, the same split everywhere, and the line training prints."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from helpers import LAYERS, RATE, ROOT, STACKS, TARGET, TINY_WAVENET, write_tone

from wavenet import receptive_field
from wavenet.preprocessing import preprocess
from wavenet.splits import describe_split, split_by_recording
from wavenet.windows import AudioWindows

R, CHUNK = 120, 500  # windows of 500 samples start 380 apart: neighbours share 120, a cut drops one window


def tones(folder, files):
    """Preprocess tones {relative path: seconds} at RATE into folder/data, cut for a receptive field of R."""
    for name, seconds in files.items():
        write_tone(folder / "wav" / name, seconds, RATE, 200 + 50 * len(name))
    preprocess(str(folder / "wav"), str(folder / "data"), RATE, CHUNK, receptive_field=R)
    return AudioWindows(str(folder / "data"))


@pytest.fixture(scope="module")
def uneven(tmp_path_factory):
    """One long recording and three short ones: 42, 2, 2 and 2 windows; p226's short one is its only one."""
    files = {"p225/long.wav": 2.0, "p225/a.wav": 0.1, "p225/b.wav": 0.1, "p226/c.wav": 0.1}
    return tones(tmp_path_factory.mktemp("uneven"), files)


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """One recording of 42 windows."""
    return tones(tmp_path_factory.mktemp("single"), {"p225/long.wav": 2.0})


def read_samples(windows, indices):
    """Which samples of the stream the windows `indices` read, as a boolean mask."""
    mask = np.zeros(int(windows.starts.max()) + windows.chunk_length, dtype=bool)
    for i in indices:
        mask[windows.starts[i] : windows.starts[i] + windows.chunk_length] = True
    return mask


def test_the_share_held_out_is_the_share_asked_on_uneven_recordings(uneven, single):
    assert np.bincount(uneven.recording).tolist() == [2, 2, 42, 2]  # a.wav, b.wav, long.wav; c.wav
    for windows in (uneven, single):
        n = len(windows)
        for fraction in (0.05, 0.1, 0.3, 0.5):
            for seed in range(4):
                train, val = split_by_recording(windows, fraction, seed)
                # within one window of the share: whole recordings (one is 88% of the windows) are not enough
                assert abs(len(val) - fraction * n) <= 1, (fraction, seed, len(val), n)
                assert len(train) >= n - len(val) - 1  # a cut drops a single window here


def test_no_sample_is_read_by_both_sides(uneven, single):
    for windows in (uneven, single):
        for fraction in (0.05, 0.3, 0.5, 0.9):
            for seed in range(4):
                train, val = split_by_recording(windows, fraction, seed)
                trained, validated = read_samples(windows, train.indices), read_samples(windows, val.indices)
                assert not (trained & validated).any()  # nor, then, a sample that both score
                # a window on neither side is one that would read validation's audio if it trained
                dropped = sorted(set(range(len(windows))) - set(train.indices) - set(val.indices))
                for i in dropped:
                    assert (read_samples(windows, [i]) & validated).any()


def test_every_speaker_keeps_training_windows(uneven, tmp_path):
    for fraction in (0.05, 0.5, 0.9):
        for seed in range(4):
            train, val = split_by_recording(uneven, fraction, seed)
            assert set(uneven.speaker_ids[train.indices].tolist()) == {0, 1}  # p226 has one recording only
            assert len(val) >= 1
    # one recording per speaker: none can be held out whole, so one is cut and both still train
    windows = tones(tmp_path, {"p225/x.wav": 1.0, "p226/y.wav": 1.0})
    train, val = split_by_recording(windows, 0.2, seed=0)
    assert set(windows.speaker_ids[train.indices].tolist()) == {0, 1}
    assert len(set(windows.recording[val.indices].tolist())) == 1
    assert abs(len(val) - 0.2 * len(windows)) <= 1


def test_the_same_arguments_give_the_same_split_in_another_process(uneven):
    train, val = split_by_recording(uneven, 0.3, seed=3)
    again = split_by_recording(uneven, 0.3, seed=3)
    assert (train.indices, val.indices) == (again[0].indices, again[1].indices)
    code = (
        "import json, sys; from wavenet.splits import split_by_recording; from wavenet.windows import AudioWindows; "
        "t, v = split_by_recording(AudioWindows(sys.argv[1]), 0.3, seed=3); print(json.dumps([t.indices, v.indices]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}  # nothing may depend on the order of a set or dict
    run = subprocess.run(
        [sys.executable, "-c", code, uneven.folder], capture_output=True, text=True, cwd=ROOT, env=env, check=True
    )
    assert json.loads(run.stdout) == [train.indices, val.indices]
    # another seed holds out another of the short recordings that fit 5%
    others = {tuple(split_by_recording(uneven, 0.05, seed)[1].indices) for seed in range(4)}
    assert len(others) > 1


def test_too_little_audio_shuffles_windows_and_says_so(tmp_path):
    windows = tones(tmp_path, {"p225/short.wav": 0.1})  # two windows that share 120 samples
    train, val = split_by_recording(windows, 0.3, seed=0)
    assert (len(train), len(val)) == (1, 1)
    line = describe_split(train, val, windows, 0.3, speakers_shown=5)
    assert "too little audio to hold out recordings: 1 validation window read audio that training reads" in line


def test_the_printed_line_counts_each_side_and_each_speaker(uneven):
    train, val = split_by_recording(uneven, 0.3, seed=0)
    n = len(uneven)
    assert len(val) == round(0.3 * n) and n - len(train) - len(val) == 1
    sides = [np.asarray(part.indices) for part in (train, val)]
    recordings = [len(set(uneven.recording[side].tolist())) for side in sides]
    lines = describe_split(train, val, uneven, 0.3, speakers_shown=5).split("\n")
    assert lines[0] == (
        f"training on {len(train)} windows of {recordings[0]} recordings, validating on {len(val)} windows of "
        f"{recordings[1]} recording{'' if recordings[1] == 1 else 's'}: {len(val) / n:.1%} of the windows held "
        "out (--val_fraction 0.3); 1 recording cut in two at a window boundary, dropping the 1 window that "
        "would read audio of both sides"
    )
    each = []
    for k, name in enumerate(uneven.speakers):
        w = [int(np.sum(uneven.speaker_ids[side] == k)) for side in sides]
        r = [len(set(uneven.recording[side][uneven.speaker_ids[side] == k].tolist())) for side in sides]
        each.append(f"{name} {w[0]}/{w[1]} ({r[0]}/{r[1]})")
    assert lines[1] == "per speaker, training/validation windows (recordings): " + ", ".join(each)
    # the third names what is held out: whole recordings by file, and where the cut one's validation begins
    whole = sorted(set(uneven.recording[sides[1]].tolist()) - set(uneven.recording[sides[0]].tolist()))
    (cut,) = set(uneven.recording[sides[1]].tolist()) & set(uneven.recording[sides[0]].tolist())
    first = sides[1][uneven.recording[sides[1]] == cut].min()
    k = first - np.flatnonzero(uneven.recording == cut)[0]  # its window k: k strides into the recording
    names = ", ".join(uneven.recording_files[r] for r in whole)
    cut_at = f"the end of {uneven.recording_files[cut]} from {k * (CHUNK - R) / RATE:.2f} s"
    assert lines[2] == (f"held out: {names} and {cut_at}" if whole else f"held out: {cut_at}")
    assert sorted(uneven.recording_files) == ["p225/a.wav", "p225/b.wav", "p225/long.wav", "p226/c.wav"]
    assert len(lines) == 3
    shortened = describe_split(train, val, uneven, 0.3, speakers_shown=1).split("\n")[1]
    assert shortened.endswith(f": {each[0]}, ... (1 more)")


def test_training_prints_the_split_once_at_the_start(tmp_path, monkeypatch, capsys):
    import train_wavenet

    field = receptive_field(STACKS, LAYERS)
    for name, seconds in {"p225/long.wav": 1.0, "p225/a.wav": 0.05, "p226/b.wav": 0.05}.items():
        write_tone(tmp_path / "wav" / name, seconds, RATE)
    preprocess(str(tmp_path / "wav"), str(tmp_path / "data"), RATE, field + TARGET, receptive_field=field)
    given = []
    monkeypatch.setattr(train_wavenet, "train", lambda model, task, train_set, val_set, *rest: given.append(val_set))
    train_wavenet.main(
        [*TINY_WAVENET, "-d", str(tmp_path / "data"), "-o", str(tmp_path / "run"), "--val_fraction", "0.1"]
    )
    out = capsys.readouterr().out.splitlines()
    held = [line for line in out if line.startswith("training on ")]
    assert len(held) == 1 and len(given) == 1
    windows = AudioWindows(str(tmp_path / "data"))
    assert f"validating on {len(given[0])} windows" in held[0] and abs(len(given[0]) - 0.1 * len(windows)) <= 1
    assert "held out (--val_fraction 0.1)" in held[0]
    assert out[out.index(held[0]) + 1].startswith("per speaker, training/validation windows (recordings): p225 ")


def test_a_meta_file_naming_too_few_recording_files_is_refused(tmp_path):
    from wavenet.corpus import META_FILE
    from wavenet.errors import UserError

    tones(tmp_path, {"p225/a.wav": 0.1, "p225/b.wav": 0.1})
    path = tmp_path / "data" / META_FILE
    meta = json.loads(path.read_text())
    assert meta["recording_files"] == ["p225/a.wav", "p225/b.wav"]
    path.write_text(json.dumps({**meta, "recording_files": ["p225/a.wav"]}))
    with pytest.raises(UserError, match="names 1 recording files for 2 recordings; rerun preprocess.py"):
        AudioWindows(str(tmp_path / "data"))
