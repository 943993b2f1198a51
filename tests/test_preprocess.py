"""preprocess: audio folders -> vctk_* chunk files, and AudioWindows reading them (wavenet/preprocessing.py,
wavenet/windows.py, wavenet/splits.py, preprocess.py)."""

import json
import multiprocessing
import os
import pickle
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch
from helpers import ROOT, SHARED_DATA, assert_one_line_error, write_tone

from wavenet import decoding, receptive_field
from wavenet.audio import load_audio, mu_law_decode, mu_law_encode
from wavenet.errors import UserError
from wavenet.preprocessing import preprocess
from wavenet.splits import split_by_recording, train_val_split
from wavenet.windows import AudioWindows

RATE = 8000
CHUNK = 500
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "c5e1cea")  # written by that version
FILES = ("vctk_codes.npy", "vctk_speakers.npy", "vctk_recordings.npy", "vctk_meta.json")


@pytest.fixture
def vctk(tmp_path):
    """Both VCTK layouts, mixed rates and formats: p225 gives 4 + 2 chunks, p226 gives 3 (each last one padded)."""
    data = tmp_path / "vctk"
    write_tone(data / "wav48" / "p225" / "p225_001.wav", 0.2, 48000)  # 1600 samples at 8 kHz
    write_tone(data / "wav48" / "p225" / "p225_002.wav", 0.07, 22050)  # 560
    write_tone(data / "wav48_silence_trimmed" / "p226" / "p226_001_mic1.flac", 0.13, 16000, freq=500)  # 1040
    return data


def read_bytes(folder):
    return {name: (folder / name).read_bytes() for name in FILES}


def test_vctk_folders_become_chunks_with_speakers(vctk, tmp_path):
    out = tmp_path / "out"
    summary = preprocess(str(vctk), str(out), RATE, CHUNK)
    assert (summary.files_read, summary.chunks, summary.speakers) == (3, 9, ["p225", "p226"])
    assert str(summary).startswith("read 3 of 3 files (0.4 s of audio at 8,000 Hz), wrote 9 chunks")
    one = preprocess(str(vctk / "wav48_silence_trimmed"), str(tmp_path / "one"), RATE, CHUNK)
    assert str(one).startswith("read 1 of 1 file (")
    ds = AudioWindows(str(out))
    assert (len(ds), ds.rate, ds.chunk_length, ds.levels, ds.speakers) == (6, RATE, CHUNK, 256, ["p225", "p226"])
    codes, speaker = ds[0]
    assert codes.shape == (CHUNK,) and codes.dtype == torch.long and codes.max() < 256
    assert speaker.shape == () and speaker.dtype == torch.long
    assert [int(ds[i][1]) for i in range(len(ds))] == [0, 0, 0, 0, 1, 1]
    # the chunks are the file's mu-law codes in order, silence after its end; without a receptive
    # field the windows are the whole chunks
    first = mu_law_encode(load_audio(str(vctk / "wav48" / "p225" / "p225_001.wav"), RATE))
    assert torch.equal(torch.cat([ds[i][0] for i in range(3)]), torch.from_numpy(first[: 3 * CHUNK]))
    silence = mu_law_encode(np.zeros(4 * CHUNK - len(first)))
    assert np.array_equal(ds.codes[3], np.concatenate([first[3 * CHUNK :], silence]))
    assert ds.recording_samples.tolist() == [1600, 560, 1040]
    # one byte per sample, memory-mapped
    assert isinstance(ds.codes, np.memmap) and ds.codes.dtype == np.uint8
    assert os.path.getsize(out / "vctk_codes.npy") < 9 * CHUNK + 200


def test_rerun_gives_identical_bytes_and_workers_change_nothing(vctk, tmp_path):
    preprocess(str(vctk), str(tmp_path / "a"), RATE, CHUNK, workers=1, flush_every=100)
    first = read_bytes(tmp_path / "a")
    preprocess(str(vctk), str(tmp_path / "a"), RATE, CHUNK, workers=1, flush_every=100)
    assert read_bytes(tmp_path / "a") == first
    preprocess(str(vctk), str(tmp_path / "b"), RATE, CHUNK, workers=2, flush_every=1)
    assert read_bytes(tmp_path / "b") == first
    assert not [n for n in os.listdir(tmp_path / "a") if n.endswith(".tmp")]


def test_bad_and_short_files_are_skipped_and_named(vctk, tmp_path):
    speaker = vctk / "wav48" / "p227"
    write_tone(speaker / "p227_short.wav", 0.01, 16000)
    (speaker / "p227_noise.wav").write_bytes(np.random.default_rng(0).bytes(3000))
    good = (vctk / "wav48" / "p225" / "p225_001.wav").read_bytes()
    (speaker / "p227_cut.wav").write_bytes(good[: len(good) // 3])
    summary = preprocess(str(vctk), str(tmp_path / "out"), RATE, CHUNK, workers=2)
    assert summary.chunks == 9 and summary.speakers == ["p225", "p226"]
    assert summary.too_short == [os.path.join("wav48", "p227", "p227_short.wav")]
    assert sorted(name for name, _ in summary.unreadable) == [
        os.path.join("wav48", "p227", "p227_cut.wav"),
        os.path.join("wav48", "p227", "p227_noise.wav"),
    ]
    line = summary.format_summary()
    assert "\n" not in line and "skipped 3" in line and "1 shorter than one chunk" in line
    assert "p227_noise.wav" in line and "9 chunks of 500 samples" in line


@pytest.mark.skipif(multiprocessing.get_start_method() != "fork", reason="the patch reaches workers only by fork")
def test_an_unexpected_error_in_a_worker_surfaces(vctk, tmp_path, monkeypatch):
    # the original's thread pool swallowed worker exceptions and exited 0 with nothing written
    def broken(path, rate):
        raise RuntimeError(f"bug while reading {path}")

    monkeypatch.setattr(decoding, "load_audio", broken)
    with pytest.raises(RuntimeError, match="bug while reading"):
        preprocess(str(vctk), str(tmp_path / "out"), RATE, CHUNK, workers=2)
    assert os.listdir(tmp_path / "out") == []


def test_no_usable_audio_is_a_user_error(vctk, tmp_path):
    for missing_or_empty in (tmp_path / "missing", tmp_path / "empty"):
        with pytest.raises(UserError, match="data folder"):
            preprocess(str(missing_or_empty), str(tmp_path / "out"), RATE, CHUNK)
        (tmp_path / "empty").mkdir(exist_ok=True)
    (tmp_path / "empty" / "notes.txt").write_text("no audio here")
    with pytest.raises(UserError, match="no .wav or .flac"):
        preprocess(str(tmp_path / "empty"), str(tmp_path / "out"), RATE, CHUNK)
    with pytest.raises(UserError, match="shorter than one chunk"):
        preprocess(str(vctk), str(tmp_path / "out"), RATE, 10 * RATE)
    assert not os.path.exists(tmp_path / "out" / "vctk_codes.npy")


def test_audio_chunks_errors_name_the_fix(vctk, tmp_path):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(UserError, match="run preprocess.py --data"):
        AudioWindows(str(tmp_path / "nothing"))
    with pytest.raises(UserError, match="run preprocess.py --data"):
        AudioWindows(str(tmp_path / "missing"))
    preprocess(str(vctk), str(tmp_path / "out"), RATE, CHUNK, levels=16)
    assert AudioWindows(str(tmp_path / "out")).levels == 16
    with pytest.raises(UserError, match="16 mu-law levels"):
        AudioWindows(str(tmp_path / "out"), levels=256)


def test_split_is_deterministic_disjoint_and_never_empty(vctk, tmp_path):
    preprocess(str(vctk), str(tmp_path / "out"), RATE, CHUNK)
    ds = AudioWindows(str(tmp_path / "out"))
    train, val = train_val_split(ds, 0.2, seed=3)
    again = train_val_split(ds, 0.2, seed=3)
    assert (train.indices, val.indices) == (again[0].indices, again[1].indices)
    assert sorted(train.indices + val.indices) == list(range(len(ds))) and len(val) == 1
    train, val = train_val_split(torch.utils.data.Subset(ds, [0, 1]), 0.01)
    assert len(train) == len(val) == 1


def test_windows_make_every_sample_a_target_once(vctk, tmp_path):
    """With a receptive field R, windows start T = chunk - R apart within each recording."""
    R, T = 300, CHUNK - 300
    preprocess(str(vctk), str(tmp_path / "out"), RATE, CHUNK, receptive_field=R)
    ds = AudioWindows(str(tmp_path / "out"))
    stored = ds.codes[:].reshape(-1)
    first_chunk = 0
    for recording, samples in enumerate(ds.recording_samples):
        windows = np.flatnonzero(ds.recording == recording)
        stream = stored[first_chunk * CHUNK : first_chunk * CHUNK + samples]
        assert len(windows) == (len(stream) - R) // T
        for k, i in enumerate(windows):
            codes, speaker = ds[i]
            assert np.array_equal(codes.numpy(), stream[k * T : k * T + CHUNK])  # never past its recording
            assert int(speaker) == ds.chunk_speakers[first_chunk]
        targets = np.concatenate([ds[i][0][R:].numpy() for i in windows])
        assert np.array_equal(targets, stream[R : R + len(windows) * T])  # each sample once, in order
        assert len(stream) - (R + len(windows) * T) < T  # but for a last stretch < T
        first_chunk += -(-samples // CHUNK)
    # 1600 + R samples give 8 windows, 560 + R give 2, 1040 + R give 5
    assert ds.recording_samples.tolist() == [1900, 860, 1340] and len(ds) == 8 + 2 + 5


def test_folders_of_format_1_read_as_before(vctk, tmp_path):
    """A folder of the previous format has no recording boundaries: its windows are its chunks."""
    out = tmp_path / "out"
    preprocess(str(vctk), str(out), RATE, CHUNK, receptive_field=120)
    meta = json.loads((out / "vctk_meta.json").read_text())
    (out / "vctk_meta.json").write_text(json.dumps({**meta, "format": 1}))
    os.remove(out / "vctk_recordings.npy")
    ds = AudioWindows(str(out))
    assert len(ds) == len(ds.codes) == 9 and ds.receptive_field == 120
    assert np.array_equal(np.stack([ds[i][0].numpy() for i in range(9)]), ds.codes[:])
    np.save(out / "vctk_recordings.npy", np.array([4, 4]))
    (out / "vctk_meta.json").write_text(json.dumps({**meta, "recordings": 2}))
    with pytest.raises(UserError, match="does not add up to the 9 chunks"):
        AudioWindows(str(out))


def test_validation_holds_out_whole_recordings(vctk, tmp_path):
    write_tone(vctk / "wav48" / "p226" / "p226_002.wav", 0.2, 16000)
    preprocess(str(vctk), str(tmp_path / "out"), RATE, CHUNK, receptive_field=120)
    ds = AudioWindows(str(tmp_path / "out"))
    for fraction in (0.05, 0.25, 0.5, 0.9):
        train, val = split_by_recording(ds, fraction, seed=0)
        assert not set(train.indices) & set(val.indices) and len(train) + len(val) >= len(ds) - 1  # a cut drops 1
        held = set(ds.recording[val.indices])
        # whole recordings while they fit, then the end of at most one more; each speaker keeps one for training
        assert held and len(held & set(ds.recording[train.indices])) <= 1
        assert set(ds.speaker_ids[train.indices]) == {0, 1}
        assert len(val) == round(fraction * len(ds)) or len(held) == 2  # 90%: the speakers' last ones are too short
    again = split_by_recording(ds, fraction, seed=0)  # the last one, again
    assert (again[0].indices, again[1].indices) == (train.indices, val.indices)


def test_validation_splits_windows_where_no_recording_can_go(vctk, tmp_path):
    preprocess(str(vctk / "wav48_silence_trimmed"), str(tmp_path / "out"), RATE, CHUNK, receptive_field=120)
    ds = AudioWindows(str(tmp_path / "out"))  # one recording
    train, val = split_by_recording(ds, 0.25, seed=0)  # two windows: too few to cut between
    assert (len(ds), len(train), len(val)) == (2, 1, 1)
    # two speakers with one recording each: holding one out would leave a speaker untrained, so one is cut
    os.remove(vctk / "wav48" / "p225" / "p225_002.wav")
    preprocess(str(vctk), str(tmp_path / "two"), RATE, CHUNK, receptive_field=120)
    ds = AudioWindows(str(tmp_path / "two"))
    train, val = split_by_recording(ds, 0.25, seed=0)
    assert set(ds.recording[val.indices]) <= set(ds.recording[train.indices])
    assert set(ds.speaker_ids[train.indices]) == {0, 1} and len(val) == round(0.25 * len(ds))


def test_pickled_dataset_maps_the_file_again(vctk, tmp_path):
    # DataLoader workers started by spawn receive a pickled dataset
    preprocess(str(vctk), str(tmp_path / "out"), RATE, CHUNK)
    ds = AudioWindows(str(tmp_path / "out"))
    copy = pickle.loads(pickle.dumps(ds))
    assert isinstance(copy.codes, np.memmap)
    assert all(torch.equal(a, b) for a, b in zip(ds[5], copy[5]))


def test_reads_the_original_chainer_format(tmp_path):
    levels, T = 256, 40
    rng = np.random.default_rng(0)
    batch = rng.integers(0, levels, (3, T))
    single = rng.integers(0, levels, T)
    one_hot = rng.integers(0, levels, T)
    x = rng.uniform(-1, 1, (2, T))  # unquantised companded values, as the original saved them
    compand = np.sign(x) * np.log1p(255 * np.abs(x)) / np.log1p(255)
    with open(tmp_path / "vctk_0", "wb") as f:
        np.save(f, batch / (levels - 1))  # a flushed list of chunks (n, T)
        np.save(f, np.array([]))  # a flush after files too short for a chunk
        np.save(f, single / (levels - 1))  # one chunk (T,)
    with open(tmp_path / "vctk_1", "wb") as f:
        np.save(f, np.eye(levels)[one_hot])  # one-hot (T, levels)
        np.save(f, (compand + 1) / 2)
    with open(tmp_path / "vctk_0_label", "wb") as f:
        np.save(f, np.array([48, 48, 48]))  # speaker guesses of the original: ignored
    ds = AudioWindows(str(tmp_path))
    assert (len(ds), ds.chunk_length, ds.levels, ds.rate, ds.speakers) == (7, T, levels, None, ["unknown"])
    expected = np.concatenate([batch, single[None], one_hot[None], mu_law_encode(x)])
    assert np.array_equal(np.stack([ds[i][0].numpy() for i in range(7)]), expected)
    assert all(int(ds[i][1]) == 0 for i in range(7))
    assert np.allclose(mu_law_decode(ds.codes[4:5]), mu_law_decode(one_hot[None]))


def test_a_folder_written_by_version_c5e1cea_reads_as_it_did(tmp_path):
    """The committed format-2 folder gives the windows it gave when it was written."""
    shutil.copytree(os.path.join(FIXTURES, "corpus"), tmp_path / "corpus")
    expected = torch.load(os.path.join(FIXTURES, "expected.pt"), weights_only=True)
    ds = AudioWindows(str(tmp_path / "corpus"), levels=256)
    assert len(ds) == int(expected["windows"])
    codes, speaker = ds[7]
    assert torch.equal(codes, expected["window_7"])
    assert torch.equal(speaker, expected["window_7_speaker"])


@pytest.mark.skipif(
    not os.path.isdir(os.path.join(SHARED_DATA, "speech", "ljspeech")), reason="shared LJ Speech clips not present"
)
def test_real_speech_at_8khz(tmp_path):
    source = os.path.join(SHARED_DATA, "speech", "ljspeech")
    data = tmp_path / "lj"
    data.mkdir()
    for name in sorted(os.listdir(source))[:3]:
        os.symlink(os.path.join(source, name), data / name)
    chunk = receptive_field(2, 4) + 200
    summary = preprocess(str(data), str(tmp_path / "out"), 8000, chunk, receptive_field=receptive_field(2, 4))
    seconds = sum(sf.info(str(data / name)).duration for name in os.listdir(data))
    assert summary.files_read == 3 and summary.seconds == pytest.approx(seconds, abs=0.01)
    assert summary.chunks == pytest.approx(seconds * 8000 / chunk, abs=3)
    ds = AudioWindows(str(tmp_path / "out"))
    assert ds.receptive_field == receptive_field(2, 4) and ds.speakers == ["lj"]
    # mu-law spreads speech over most codes, centred on silence and rarely at full scale
    codes = ds.codes[:].astype(int)
    assert len(np.unique(codes)) > 200 and abs(codes.mean() - 128) < 10
    assert np.isin(codes, (0, 255)).mean() < 0.001


def script(*args):
    """Start preprocess.py as a user would; communicate() waits for it."""
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "preprocess.py"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )


def test_script_runs_as_a_user_would(vctk, tmp_path):
    out = tmp_path / "out"
    chunks = ["--rate", "8000", "--stacks_num", "1", "--layers_num", "3", "--target_length", "100"]
    run = script("--data", str(vctk), "--output", str(out), *chunks, "--workers", "1")
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 0, stderr
    assert "wrote" in stdout and str(out) in stdout
    meta = json.loads((out / "vctk_meta.json").read_text())
    assert meta["chunk_length"] == receptive_field(1, 3) + 100 and meta["rate"] == 8000
    assert meta["receptive_field"] == receptive_field(1, 3)


def test_script_bad_flags_give_one_line_errors(tmp_path):
    runs = [
        (script("--data", str(tmp_path), "--rate", "0"), "--rate: must be a positive"),  # refused by argparse
        (script("--data", str(tmp_path / "missing"), "--workers", "1"), "not found"),
    ]  # a UserError
    for run, fragment in runs:
        _, stderr = run.communicate(timeout=120)
        assert_one_line_error(run.returncode, stderr, fragment)
