"""Which folder names a recording's speaker: preprocess's --speaker_level (wavenet/recordings.py speakers_of,
wavenet/preprocessing.py, preprocess.py), and the number of speakers train_wavenet.py then conditions on."""

import json
import logging
import os
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
    run_main,
    write_tone,
)

from wavenet import checkpoint, corpus, files, receptive_field
from wavenet.errors import UserError
from wavenet.preprocessing import preprocess

FIELD = receptive_field(STACKS, LAYERS)
CHUNK = FIELD + TARGET
FILES = (corpus.CODES_FILE, corpus.SPEAKERS_FILE, corpus.RECORDINGS_FILE, corpus.META_FILE)


@pytest.fixture
def libri(tmp_path):
    """LibriSpeech's speaker/chapter/file.flac: speakers 103 and 1034, two chapters each, and chapter 1240
    under both (real chapter numbers are unique; here one folder name stands for two chapters)."""
    data = tmp_path / "LibriSpeech" / "train-clean-100"
    layout = {"103": {"1240": 2, "1241": 1}, "1034": {"1240": 1, "1258": 3}}
    for speaker, chapters in layout.items():
        for chapter, count in chapters.items():
            for k in range(count):
                write_tone(data / speaker / chapter / f"{speaker}-{chapter}-{k:04d}.flac", 0.05, 16000)
    return data


def run(data, out, level=None):
    """preprocess `data` into `out` for TINY_WAVENET; the summary and the folder as corpus reads it."""
    summary = preprocess(str(data), str(out), RATE, CHUNK, receptive_field=FIELD, speaker_level=level)
    return summary, corpus.read_folder(str(out))


def recording_speakers(stored):
    """The speaker name of each recording, in row order, from the speaker id of its chunks (all must agree)."""
    rows = -(-stored.recording_samples // CHUNK)
    starts = np.concatenate([[0], np.cumsum(rows)[:-1]])
    names = []
    for start, n in zip(starts, rows):
        ids = set(stored.chunk_speakers[start : start + n].tolist())
        assert len(ids) == 1, f"a recording's chunks carry speakers {ids}"
        names.append(stored.speakers[ids.pop()])
    return names


def meta_of(out):
    return json.loads((out / corpus.META_FILE).read_text())


def test_librispeech_level_1_is_the_speaker_and_level_2_the_chapter(libri, tmp_path):
    summary, stored = run(libri, tmp_path / "speakers", level=1)
    assert stored.speakers == summary.speakers == ["103", "1034"]
    # files in sorted path order: 103/1240 (2), 103/1241 (1), 1034/1240 (1), 1034/1258 (3)
    assert recording_speakers(stored) == ["103"] * 3 + ["1034"] * 4
    assert summary.speaker_files == [3, 4]
    assert meta_of(tmp_path / "speakers")["speaker_level"] == 1

    summary, stored = run(libri, tmp_path / "chapters", level=2)
    # chapter 1240 of both speakers stays two speakers: named by their path from --data
    assert stored.speakers == ["103/1240", "103/1241", "1034/1240", "1034/1258"]
    assert recording_speakers(stored) == ["103/1240"] * 2 + ["103/1241", "1034/1240"] + ["1034/1258"] * 3
    assert summary.speaker_files == [2, 1, 1, 3]


def test_the_default_is_each_files_folder_and_warns_where_names_merge(libri, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="wavenet.recordings"):
        summary, stored = run(libri, tmp_path / "out")
    # as before the flag: the folder's name, so both chapters 1240 are one speaker ...
    assert stored.speakers == ["1240", "1241", "1258"]
    assert recording_speakers(stored) == ["1240"] * 2 + ["1241", "1240"] + ["1258"] * 3
    assert "speaker_level" not in meta_of(tmp_path / "out")  # ... and the meta file as it was
    # ... but not silently
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == 1 and "1240 (103/1240, 1034/1240)" in warned[0] and "--speaker_level" in warned[0]
    assert summary.speaker_level is None


def test_the_flag_changes_only_the_speakers(tmp_path):
    """Where the folder holding each file is also the folder 1 level down (VCTK), level 1 writes the same
    codes, recordings and speaker ids as the default; its meta file differs only by recording the level."""
    data = tmp_path / "wav48"
    for speaker, seconds in (("p225", 0.05), ("p225", 0.03), ("p226", 0.04)):
        write_tone(data / speaker / f"{speaker}_{seconds}.wav", seconds, 16000)
    run(data, tmp_path / "default")
    run(data, tmp_path / "level1", level=1)
    for name in corpus.ARRAY_FILES:
        assert (tmp_path / "default" / name).read_bytes() == (tmp_path / "level1" / name).read_bytes()
    default, level1 = meta_of(tmp_path / "default"), meta_of(tmp_path / "level1")
    assert level1.pop("speaker_level") == 1 and level1 == default


def test_a_flat_folder_and_level_0_are_one_speaker_named_after_the_data_folder(libri, tmp_path):
    flat = tmp_path / "recordings"
    for k in range(3):
        write_tone(flat / f"take{k}.wav", 0.04, 16000)
    for level in (None, 0):
        summary, stored = run(flat, tmp_path / f"flat{level}", level=level)
        assert stored.speakers == ["recordings"] and summary.speaker_files == [3]
    summary, stored = run(libri, tmp_path / "all", level=0)
    assert stored.speakers == ["train-clean-100"] and summary.speaker_files == [7]
    assert set(stored.chunk_speakers.tolist()) == {0}
    assert meta_of(tmp_path / "all")["speaker_level"] == 0


def test_same_folder_name_under_different_parents(tmp_path, caplog):
    """A tree with wav/ and raw/ copies: level 1 gives speakers wav and raw, level 2 keeps raw/p225 apart from
    wav/p225, and the default merges them (as it always did) with a warning."""
    data = tmp_path / "data"
    write_tone(data / "wav" / "p225" / "a.wav", 0.04, 16000)
    write_tone(data / "raw" / "p225" / "a.wav", 0.05, 16000, freq=400)
    write_tone(data / "wav" / "p226" / "b.wav", 0.06, 16000, freq=500)
    assert run(data, tmp_path / "one", level=1)[1].speakers == ["raw", "wav"]
    summary, stored = run(data, tmp_path / "two", level=2)
    assert stored.speakers == ["raw/p225", "wav/p225", "wav/p226"]
    assert recording_speakers(stored) == ["raw/p225", "wav/p225", "wav/p226"]  # sorted paths: raw/ first
    with caplog.at_level(logging.WARNING, logger="wavenet.recordings"):
        assert run(data, tmp_path / "default")[1].speakers == ["p225", "p226"]
    assert any("p225 (raw/p225, wav/p225)" in r.getMessage() for r in caplog.records)


def test_names_that_are_not_utf8_stay_printable(tmp_path):
    folder = os.path.join(str(tmp_path / "data"), os.fsdecode(b"sp\xff"), "ch")
    try:
        os.makedirs(folder)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    tone = 0.3 * np.sin(np.arange(RATE // 20) / 3)
    sf.write(os.fsencode(os.path.join(folder, "a.wav")), tone, RATE)
    for level, name in ((1, "sp\\xff"), (2, "sp\\xff/ch")):
        summary, stored = run(tmp_path / "data", tmp_path / f"out{level}", level=level)
        assert stored.speakers == [name]
        assert json.loads((tmp_path / f"out{level}" / corpus.META_FILE).read_text(encoding="utf-8"))["speakers"] == [
            name
        ]
        assert name in summary.format_speakers()


def test_a_file_above_the_level_is_an_error_naming_it_and_the_fix(libri, tmp_path):
    out = tmp_path / "out"
    run(libri, out, level=1)
    before = {name: (out / name).read_bytes() for name in FILES}
    write_tone(libri / "103" / "stray.flac", 0.05, 16000)  # 1 folder down: no chapter
    with pytest.raises(UserError) as e:
        run(libri, out, level=2)
    message = str(e.value)
    assert "'103/stray.flac' lies 1 folder below it" in message
    assert "pass --speaker_level 1 or lower (0: one speaker), or move that file into speaker folders" in message
    assert {name: (out / name).read_bytes() for name in FILES} == before  # the earlier output is kept
    # every file too shallow: no file to move, only a lower level to pass
    with pytest.raises(
        UserError, match=r"lies 2 folders below it, as do 7 more of the 8 files; pass --speaker_level 1"
    ):
        run(libri, out, level=3)
    flat = tmp_path / "flat"
    write_tone(flat / "x.wav", 0.05, 16000)
    with pytest.raises(UserError, match=r"'x.wav' lies 0 folders below it; pass --speaker_level 0 \(one speaker\)$"):
        run(flat, tmp_path / "flat_out", level=1)


def test_a_rerun_with_another_level_replaces_the_folder_as_a_whole(libri, tmp_path):
    out = tmp_path / "out"
    run(libri, out, level=1)
    codes = (out / corpus.CODES_FILE).read_bytes()
    _, stored = run(libri, out, level=2)  # read_folder checks that meta and arrays are of one run
    assert len(stored.speakers) == 4 and meta_of(out)["speaker_level"] == 2
    assert (out / corpus.CODES_FILE).read_bytes() == codes  # the same audio: only the speakers changed
    run(libri, out)  # back to the default: as a fresh run into a new folder
    run(libri, tmp_path / "fresh")
    assert {n: (out / n).read_bytes() for n in FILES} == {n: (tmp_path / "fresh" / n).read_bytes() for n in FILES}


def preprocess_script(*args):
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "preprocess.py"), *map(str, args), *TINY_CHUNKS, "--workers", "1"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )


@pytest.mark.slow  # a subprocess of its own: out of CI for time (run with -m slow)
def test_the_script_prints_the_speakers_it_found(tmp_path, capsys):
    data = tmp_path / "train-clean-100"
    speakers = ["103", "1034", "1040", "1069", "1081", "1088", "1098"]  # 7: five are named
    for i, speaker in enumerate(speakers):
        for k in range(1 + i % 3):
            write_tone(data / speaker / str(1240 + i) / f"{speaker}-{k}.flac", 0.03, 16000)
    done = preprocess_script("--data", data, "--output", tmp_path / "out", "--speaker_level", "1")
    assert done.returncode == 0, done.stderr
    line = [line for line in done.stdout.splitlines() if "speaker" in line and "below --data" in line]
    assert line == [
        "7 speakers, each a folder 1 level below --data: 103 (1 file), 1034 (2 files), 1040 (3 files), "
        "1069 (1 file), 1081 (2 files), ... (2 more)"
    ], done.stdout
    chunks = [*TINY_CHUNKS, "--workers", "1"]
    assert (
        run_main(
            "preprocess.py", ["--data", str(data), "--output", str(tmp_path / "all"), "--speaker_level", "0", *chunks]
        )
        == 0
    )
    assert "1 speaker for all files (--speaker_level 0): train-clean-100 (13 files)\n" in capsys.readouterr().out
    assert run_main("preprocess.py", ["--data", str(data), "--output", str(tmp_path / "default"), *chunks]) == 0
    assert "7 speakers, each the folder holding its files: 1240 (1 file), " in capsys.readouterr().out


def test_the_script_refuses_a_too_shallow_file_and_a_negative_level(libri, tmp_path, capsys, monkeypatch):
    write_tone(libri / "stray.flac", 0.05, 16000)
    done = preprocess_script("--data", libri, "--output", tmp_path / "out", "--speaker_level", "1")
    assert_one_line_error(done.returncode, done.stderr, "'stray.flac' lies 0 folders below it")
    assert not (tmp_path / "out").exists()  # refused before anything was written
    status = run_main("preprocess.py", ["--data", str(libri), "--speaker_level", "-1"], monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, "--speaker_level: must be zero or a positive integer")


def test_train_wavenet_conditions_on_the_speakers_of_the_level(libri, tmp_path, capsys):
    import train_wavenet

    for level, speakers in ((1, 2), (2, 4), (0, 0)):
        data, out = tmp_path / f"data{level}", tmp_path / f"run{level}"
        run(libri, data, level=level)
        capsys.readouterr()
        train_wavenet.main([*TINY_WAVENET, "-b", "4", "-e", "1", "-d", str(data), "-o", str(out)])
        printed = capsys.readouterr().out
        snapshot = checkpoint.load(files.newest(str(out), "wavenet_"))
        assert snapshot["config"]["num_speakers"] == speakers
        if speakers:
            assert f"global conditioning on {speakers} speakers" in printed, printed
        else:
            assert "one speaker (train-clean-100): no speaker conditioning" in printed, printed
