"""Preprocessed folders under faults (issue 12): a kill at any step of the commit leaves one whole output, killed
runs leave nothing behind (workers included), valid-but-wrong files end in one error line when the folder is
opened, and odd inputs (names that are not UTF-8, symlink loops, absurd sample rates) are read or refused
with a clear word instead of a traceback or silent extra work."""

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf
from conftest import ROOT
from helpers import LAYERS, RATE, STACKS, TARGET, TINY_WAVENET, assert_one_line_error, write_tone

from wavenet import corpus, corpus_commit, files, receptive_field
from wavenet.audio import ImplausibleRate, load_audio
from wavenet.errors import UserError
from wavenet.features import MelSettings
from wavenet.preprocessing import preprocess
from wavenet.windows import AudioWindows

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
FIELD = receptive_field(STACKS, LAYERS)
CHUNK = FIELD + TARGET
FILES = corpus.OUTPUT_FILES
WITHOUT_FEATURES = sorted(set(FILES) - {corpus.FEATURES_FILE})
MEL_BANDS, MEL_HOP = 8, 32  # a hop that divides TARGET
PRE_FLAGS = ["--rate", str(RATE), "--stacks_num", str(STACKS), "--layers_num", str(LAYERS)]
PRE_FLAGS += ["--target_length", str(TARGET)]

# For k = 1, 2, ...: a forked child (one torch import for all) runs preprocess.py into folder `folders`.format(k)
# and SIGKILLs itself just before the k-th step (a rename, fsync or removal) of its commit, until one child
# finishes the commit; prints {k: exit status}
KILL_AT_EVERY_STEP = """
import json, os, signal, sys
import preprocess
from wavenet import cli, corpus_commit
from wavenet.audio import load_audio
folders, warm_up, argv = sys.argv[1], sys.argv[2], sys.argv[3:]
load_audio(warm_up, 12345)  # resampling's lazy imports, once for all children
def stopping(real, k, steps, committing):
    def step(*args):
        if committing:
            steps.append(real.__name__)
            if len(steps) == k:
                os.kill(os.getpid(), signal.SIGKILL)
        return real(*args)
    return step
def child(k):
    steps, committing = [], []
    for name in ("_rename", "_sync_folder", "_remove_tree"):
        setattr(corpus_commit, name, stopping(getattr(corpus_commit, name), k, steps, committing))
    real_commit = corpus_commit.commit
    def commit(*args):
        committing.append(True)
        real_commit(*args)
    corpus_commit.commit = commit
    sys.argv = ["preprocess.py", "--output", folders.format(k), *argv]
    try:
        cli.run(preprocess.main)
    except SystemExit as e:
        os._exit(e.code or 0)
    os._exit(0)
outcomes = {}
k = 0
while os.path.isdir(folders.format(k + 1)):  # one folder, holding the old output, for each child
    k += 1
    pid = os.fork()
    if pid == 0:
        child(k)
    outcomes[k] = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if outcomes[k] != -signal.SIGKILL:
        break
print(json.dumps(outcomes))
"""

# preprocess.py whose decoding workers each say they started (a file named by their pid) and hang
STALLING_WORKERS = """
import os, runpy, sys, time
import wavenet.decoding as decoding
flags = sys.argv.pop()
def chunk_file(*args, **kwargs):
    open(os.path.join(flags, str(os.getpid())), "w").close()
    time.sleep(600)
chunk_file.__module__, chunk_file.__qualname__ = "wavenet.decoding", "chunk_file"  # pickled by name
decoding.chunk_file = chunk_file
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


@pytest.fixture(scope="module")
def tones(tmp_path_factory):
    """Two speakers, three recordings at mixed rates."""
    data = tmp_path_factory.mktemp("tones") / "wav"
    write_tone(data / "p1" / "a.wav", 0.15, 16000)
    write_tone(data / "p1" / "b.wav", 0.08, 22050, freq=440.0)
    write_tone(data / "p2" / "c.wav", 0.1, 8000, freq=200.0)
    return data


def listing(folder):
    """The names in `folder`, but for the lock file a killed run leaves (see files.folder_lock)."""
    return sorted(name for name in os.listdir(folder) if name != getattr(files, "LOCK_FILE", None))


def files_of(folder):
    """The bytes of the output files as readers see them (a pending commit's journal first)."""
    paths = {name: corpus.path_of(str(folder), name) for name in FILES}
    return {name: open(path, "rb").read() for name, path in paths.items() if os.path.exists(path)}


def run_preprocess(tones, out, *extra, prefix=()):
    return subprocess.Popen(
        [sys.executable, *prefix, os.path.join(ROOT, "preprocess.py"), "--data", str(tones), "--output", str(out)]
        + PRE_FLAGS
        + ["--workers", "1", *extra],
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# 1. The four files are committed as a whole


def test_a_kill_at_every_step_of_the_commit_leaves_the_old_output_or_the_new_one(tones, tmp_path):
    """The new output has log-mel features too, which the old one lacks; a rerun like the old one removes them."""
    old_folder, new_folder = tmp_path / "old", tmp_path / "new"
    mel = MelSettings.for_rate(RATE, MEL_BANDS, hop=MEL_HOP)
    preprocess(str(tones), str(old_folder), RATE, CHUNK, receptive_field=FIELD)
    preprocess(str(tones), str(new_folder), RATE, CHUNK, receptive_field=FIELD, levels=16, mel=mel)
    old, new = files_of(old_folder), files_of(new_folder)
    assert all(old[name] != new[name] for name in (corpus.CODES_FILE, corpus.META_FILE))
    assert sorted(old) == WITHOUT_FEATURES and sorted(new) == sorted(FILES)
    for k in range(1, 13):  # the commit takes fewer steps
        shutil.copytree(old_folder, tmp_path / f"kill{k}")
    argv = [str(tmp_path / "kill{}"), str(tones / "p1" / "a.wav"), "--data", str(tones), *PRE_FLAGS]
    run = subprocess.run(
        [sys.executable, "-c", KILL_AT_EVERY_STEP, *argv, "--workers", "1", "--levels", "16"]
        + ["--mel", str(MEL_BANDS), "--mel_hop", str(MEL_HOP)],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    outcomes = {int(k): status for k, status in json.loads(run.stdout.splitlines()[-1]).items()}
    steps = len(outcomes)  # the last run finished the commit
    assert list(outcomes.values()) == [-signal.SIGKILL] * (steps - 1) + [0] and steps >= 7, outcomes
    killed = list(range(1, steps))
    seen = []
    for k in range(1, steps + 1):
        folder = tmp_path / f"kill{k}"
        now = files_of(folder)
        assert now in (old, new), f"killed before step {k}: a mix of the old and the new output"
        seen.append("old" if now == old else "new")
        ds = AudioWindows(str(folder))  # and the reader takes it, whole
        assert ds.levels == (256 if now == old else 16)
    # the old output until the one rename that commits, the new one from there on
    assert seen == sorted(seen, key=("old", "new").index) and seen[0] == "old" and seen[-1] == "new", seen
    for k in killed:  # the next run finishes or discards what the killed one left, and leaves nothing else
        folder = tmp_path / f"kill{k}"
        preprocess(str(tones), str(folder), RATE, CHUNK, receptive_field=FIELD)
        assert files_of(folder) == old and listing(folder) == WITHOUT_FEATURES


def test_a_mix_of_two_runs_is_refused(tones, tmp_path):
    a, b, mixed = tmp_path / "a", tmp_path / "b", tmp_path / "mixed"
    preprocess(str(tones), str(a), RATE, CHUNK, receptive_field=FIELD)
    preprocess(str(tones), str(b), RATE, CHUNK, receptive_field=FIELD, levels=16)  # same shapes, other codes
    # as a folder copied while a commit was being moved in would be: new codes beside the old meta
    shutil.copytree(a, mixed)
    shutil.copy(b / corpus.CODES_FILE, mixed / corpus.CODES_FILE)
    with pytest.raises(UserError, match="vctk_codes.npy' is not the file .* describes .*mixes the files of two"):
        AudioWindows(str(mixed))
    # speakers of the same shape from another run (the speaker folders swapped names)
    swapped = tmp_path / "swapped"
    shutil.copytree(tones, swapped)
    os.rename(swapped / "p1", swapped / "p3")
    preprocess(str(swapped), str(tmp_path / "c"), RATE, CHUNK, receptive_field=FIELD)
    shutil.copytree(a, tmp_path / "mixed2")
    shutil.copy(tmp_path / "c" / corpus.SPEAKERS_FILE, tmp_path / "mixed2" / corpus.SPEAKERS_FILE)
    with pytest.raises(UserError, match="vctk_speakers.npy' is not the file .*another fingerprint"):
        AudioWindows(str(tmp_path / "mixed2"))
    with open(tmp_path / "mixed2" / corpus.SPEAKERS_FILE, "ab") as f:
        f.write(b"\0")
    with pytest.raises(UserError, match=r"vctk_speakers.npy' is not the file .*\d+ bytes where its meta file says"):
        AudioWindows(str(tmp_path / "mixed2"))


# 2. Nothing left behind


def alive(pid):
    """Whether process `pid` runs (a zombie, dead but not yet reaped by its new parent, does not)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; prctl is Linux's")
def test_workers_end_when_preprocess_is_killed_and_the_next_run_cleans_up(tones, tmp_path, caplog):
    out, flags = tmp_path / "out", tmp_path / "flags"
    flags.mkdir()
    log = open(tmp_path / "stderr", "w")  # noqa: SIM115 (not a pipe: workers that outlive the run would hold it)
    argv = ["--data", str(tones), "--output", str(out), *PRE_FLAGS, "--workers", "2", str(flags)]
    run = subprocess.Popen(
        [sys.executable, "-c", STALLING_WORKERS, os.path.join(ROOT, "preprocess.py"), *argv],
        cwd=ROOT,
        env=ENV,
        stdout=log,
        stderr=log,
    )
    log.close()
    deadline = time.monotonic() + 120
    while len(os.listdir(flags)) < 2:
        assert run.poll() is None, (tmp_path / "stderr").read_text()
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.05)
    workers = [int(name) for name in os.listdir(flags)]
    assert all(alive(pid) for pid in workers)
    run.kill()
    run.wait()
    deadline = time.monotonic() + 5
    while any(alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    survivors = [pid for pid in workers if alive(pid)]
    for pid in survivors:  # this test's own, so that a failure leaves nothing running
        os.kill(pid, signal.SIGKILL)
    assert not survivors, "workers outlived the preprocess that was killed"
    left = listing(out)
    assert len(left) == 1 and corpus_commit.STAGING.fullmatch(left[0]), left  # the killed run's staging folder
    with caplog.at_level(logging.WARNING):
        preprocess(str(tones), str(out), RATE, CHUNK, receptive_field=FIELD)
    assert listing(out) == WITHOUT_FEATURES
    assert f"removed what interrupted preprocess runs left in {out}: {left[0]}" in caplog.text


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="tells open files from /proc")
def test_the_next_run_removes_only_stale_leftovers_of_its_own_kind(tones, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.Popen(["true"])
    gone.wait()
    living = subprocess.Popen(["sleep", "60"])
    try:
        stale = out / f".vctk_staging.{gone.pid}.tmp"
        stale.mkdir()
        (stale / corpus.CODES_FILE).write_bytes(b"half")
        (out / f".vctk_staging.{living.pid}.tmp").mkdir()  # another run's, still writing
        (out / ".vctk_codes.npy.k3j9x_.tmp").write_bytes(b"left by an older version")
        held = open(out / ".vctk_meta.json.q1w2e3.tmp", "wb")  # noqa: SIM115 (an older version's, still open)
        keep = ["notes.tmp", ".vctk_codes.npy.tmp.bak", ".vctk_other.k3j9x_.tmp"]  # not ours
        for name in keep:
            (out / name).write_text("the user's")
        preprocess(str(tones), str(out), RATE, CHUNK, receptive_field=FIELD)
        held.close()
        assert sorted(os.listdir(out)) == sorted(
            [*WITHOUT_FEATURES, *keep, f".vctk_staging.{living.pid}.tmp", ".vctk_meta.json.q1w2e3.tmp"]
        )
    finally:
        living.kill()
        living.wait()


# 3. Files that are valid but wrong


@pytest.fixture(scope="module")
def folder(tones, tmp_path_factory):
    out = tmp_path_factory.mktemp("good") / "data"
    preprocess(str(tones), str(out), RATE, CHUNK, receptive_field=FIELD, levels=16)
    return out


def rewrite_meta(change):
    def tamper(folder):
        meta = json.loads((folder / corpus.META_FILE).read_text())
        (folder / corpus.META_FILE).write_text(json.dumps(change(meta)))

    return tamper


def rewrite_array(name, change):
    def tamper(folder):
        np.save(folder / name, change(np.load(folder / name)))

    return tamper


def set_item(array, index, value):
    array = array.copy()
    array[index] = value
    return array


FAULTS = {  # what is done to a good folder: (file named in the error, what the error says)
    "meta-a-list": (rewrite_meta(lambda m: [m]), corpus.META_FILE, "holds a JSON list, not the object"),
    "meta-lacks-levels": (
        rewrite_meta(lambda m: {k: v for k, v in m.items() if k != "levels"}),
        corpus.META_FILE,
        "lacks the key 'levels'",
    ),
    "meta-chunks-text": (
        rewrite_meta(lambda m: {**m, "chunks": "12"}),
        corpus.META_FILE,
        "'chunks' should be a positive integer, not \"12\"",
    ),
    "meta-levels-bool": (
        rewrite_meta(lambda m: {**m, "levels": True}),
        corpus.META_FILE,
        "'levels' should be an integer from 2 to 256, not true",
    ),
    "meta-speakers-names": (
        rewrite_meta(lambda m: {**m, "speakers": [1, 2]}),
        corpus.META_FILE,
        "'speakers' should be a non-empty list of names",
    ),
    "meta-files-wrong": (
        rewrite_meta(lambda m: {**m, "files": {}}),
        corpus.META_FILE,
        "'files' should be the size and fingerprint of",
    ),
    "codes-float": (
        rewrite_array(corpus.CODES_FILE, lambda a: a.astype(np.float32)),
        corpus.CODES_FILE,
        "holds float32 values, not uint8 ones",
    ),
    "codes-shape": (
        rewrite_array(corpus.CODES_FILE, lambda a: a.T),
        corpus.CODES_FILE,
        "has shape",
    ),
    "codes-over-levels": (
        rewrite_array(corpus.CODES_FILE, lambda a: set_item(a, (3, 7), 200)),
        corpus.CODES_FILE,
        "holds code 200, but its meta file says 16 mu-law levels (codes 0..15)",
    ),
    "speakers-float": (
        rewrite_array(corpus.SPEAKERS_FILE, lambda a: a.astype(np.float64)),
        corpus.SPEAKERS_FILE,
        "holds float64 values, not integer ones",
    ),
    "speaker-id-too-large": (
        rewrite_array(corpus.SPEAKERS_FILE, lambda a: set_item(a, -1, 2)),
        corpus.SPEAKERS_FILE,
        "holds speaker id 2, but its meta file names 2 speaker(s) (ids 0..1)",
    ),
    "speaker-id-negative": (
        rewrite_array(corpus.SPEAKERS_FILE, lambda a: set_item(a, 0, -1)),
        corpus.SPEAKERS_FILE,
        "holds speaker id -1",
    ),
    "recordings-do-not-add-up": (
        rewrite_array(corpus.RECORDINGS_FILE, lambda a: set_item(a, 0, a[0] + 10 * CHUNK)),
        corpus.RECORDINGS_FILE,
        "does not add up to the",
    ),
    "recordings-float": (
        rewrite_array(corpus.RECORDINGS_FILE, lambda a: a.astype(np.float64)),
        corpus.RECORDINGS_FILE,
        "holds float64 values, not integer ones",
    ),
}


@pytest.mark.parametrize("fault", FAULTS)
def test_a_valid_but_wrong_file_is_refused_when_the_folder_opens(folder, tmp_path, fault):
    tamper, name, says = FAULTS[fault]
    shutil.copytree(folder, tmp_path / "data")
    tamper(tmp_path / "data")
    with pytest.raises(UserError) as refused:
        AudioWindows(str(tmp_path / "data"))
    message = str(refused.value)
    assert repr(str(tmp_path / "data" / name)) in message and says in message, message
    assert message.endswith("rerun preprocess.py") or message.endswith("rerun it"), message


def test_large_codes_are_checked_where_cheap_and_window_by_window(folder, tmp_path, monkeypatch):
    """Codes too large to scan at every start: sampled rows when the folder opens, each window as it is read."""
    monkeypatch.setattr(corpus, "FULL_SCAN_BYTES", 0)
    monkeypatch.setattr(corpus, "CHECKED_ROWS", 4)
    data = tmp_path / "data"
    shutil.copytree(folder, data)
    ds = AudioWindows(str(data))
    assert not ds.codes_checked and all(int(ds[i][0].max()) < 16 for i in range(len(ds)))
    codes = np.load(data / corpus.CODES_FILE)
    rewrite_array(corpus.CODES_FILE, lambda a: set_item(a, 0, 200))(data)  # row 0 is sampled
    with pytest.raises(UserError, match="holds code 200"):
        AudioWindows(str(data))
    sampled = np.linspace(0, len(codes) - 1, corpus.CHECKED_ROWS).astype(int)
    row = next(r for r in range(len(codes)) if r not in sampled)
    np.save(data / corpus.CODES_FILE, set_item(codes, row, 200))
    meta = json.loads((data / corpus.META_FILE).read_text())
    meta["files"] = corpus.commit_record(str(data))
    (data / corpus.META_FILE).write_text(json.dumps(meta))
    ds = AudioWindows(str(data))  # not in a sampled row: opens
    bad = [i for i in range(len(ds)) if ds.starts[i] // CHUNK <= row <= (ds.starts[i] + CHUNK - 1) // CHUNK]
    with pytest.raises(UserError, match="holds code 200, but its meta file says 16 mu-law levels"):
        ds[bad[0]]


def test_train_wavenet_refuses_a_speaker_id_out_of_range_before_training(folder, tmp_path):
    """What surfaced as an IndexError mid-training: one error line as the folder is opened."""
    data = tmp_path / "data"
    shutil.copytree(folder, data)
    rewrite_array(corpus.SPEAKERS_FILE, lambda a: set_item(a, -1, 5))(data)
    argv = ["train_wavenet.py", *TINY_WAVENET, "--levels", "16", "-b", "4", "-e", "1", "-d", str(data)]
    run = subprocess.run(
        [sys.executable, *argv, "-o", str(tmp_path / "run")], cwd=ROOT, env=ENV, capture_output=True, text=True
    )
    assert_one_line_error(run.returncode, run.stderr, "holds speaker id 5, but its meta file names 2 speaker(s)")
    assert "rerun preprocess.py" in run.stderr.splitlines()[-1]


# 4. File names that are not valid UTF-8


def test_names_that_are_not_utf8_are_read_and_shown_escaped(tmp_path):
    data = tmp_path / "data"
    speaker = os.path.join(str(data), os.fsdecode(b"sp\xff"))
    try:
        os.makedirs(speaker)
    except (OSError, UnicodeError):
        pytest.skip("this file system refuses names that are not UTF-8")
    tone = 0.3 * np.sin(np.arange(RATE // 2) / 3)
    sf.write(os.fsencode(os.path.join(speaker, os.fsdecode(b"a\xff.wav"))), tone, RATE)
    sf.write(os.fsencode(os.path.join(speaker, os.fsdecode(b"short\xfe.wav"))), tone[:10], RATE)
    with open(os.path.join(speaker, os.fsdecode(b"bad\xfd.wav")), "wb") as f:
        f.write(b"not audio at all")
    run = run_preprocess(data, tmp_path / "out")
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 0 and "Traceback" not in stderr, stderr
    assert "read 2 of 3 files" in stdout and "1 unreadable (sp\\xff/bad\\xfd.wav)" in stdout, stdout
    assert "sp\\xff/bad\\xfd.wav: cannot read it as audio" in stderr, stderr
    meta = json.loads((tmp_path / "out" / corpus.META_FILE).read_text(encoding="utf-8"))
    assert meta["speakers"] == ["sp\\xff"]
    assert meta["too_short"] == ["sp\\xff/short\\xfe.wav"] and meta["unreadable"] == ["sp\\xff/bad\\xfd.wav"]
    ds = AudioWindows(str(tmp_path / "out"))
    assert ds.speakers == ["sp\\xff"] and len(ds) > 0


# 5. Symbolic link loops


def test_a_symlink_loop_reads_each_file_once_and_says_so(tmp_path, caplog):
    data = tmp_path / "data"
    write_tone(data / "p1" / "a.wav", 0.2, RATE)
    os.symlink("..", data / "p1" / "loop")  # data/p1/loop/p1/loop/... for ever
    os.symlink("p1", data / "p2")  # a second way into p1
    os.symlink("a.wav", data / "p1" / "b.wav")  # a second name of a.wav
    with caplog.at_level(logging.WARNING):
        summary = preprocess(str(data), str(tmp_path / "out"), RATE, CHUNK, receptive_field=FIELD)
    assert (summary.files_found, summary.files_read, summary.speakers) == (1, 1, ["p1"])
    assert AudioWindows(str(tmp_path / "out")).recording_samples.tolist() == [FIELD + RATE // 5]
    warnings = [r.getMessage() for r in caplog.records if "reached again" in r.getMessage()]
    assert warnings == [
        f"skipped 2 folder(s) and 1 file(s) under {data} reached again by another path (a symbolic link "
        "loop, or two links to one place), such as p1/loop: each is read once"
    ]


# 6. Absurd sample rates


def test_an_absurd_sample_rate_is_refused_not_resampled(tmp_path):
    data = tmp_path / "data"
    write_tone(data / "p1" / "good.wav", 0.2, RATE)
    sf.write(str(data / "p1" / "one_hz.wav"), np.zeros(RATE), 1)  # a header claiming 1 Hz
    start = time.monotonic()
    summary = preprocess(str(data), str(tmp_path / "out"), RATE, CHUNK, receptive_field=FIELD)
    assert time.monotonic() - start < 30  # resampled, 1 s at 8 kHz would be 2.2 h of chunks
    reason = "sample rate 1 Hz is implausible (expected 1,000..384,000)"
    assert summary.refused == [(os.path.join("p1", "one_hz.wav"), reason)] and summary.files_read == 1
    assert summary.format_summary().endswith(f"; skipped 1: 1 refused ({os.path.join('p1', 'one_hz.wav')}: {reason})")
    meta = json.loads((tmp_path / "out" / corpus.META_FILE).read_text())
    assert meta["refused"] == [os.path.join("p1", "one_hz.wav")]
    with pytest.raises(ImplausibleRate, match="resampling 8,000 Hz to 384,000 Hz would upsample 48x"):
        load_audio(str(data / "p1" / "good.wav"), 384_000)
    with pytest.raises(UserError, match="--rate 100: pass a sample rate from 1,000 to 384,000 Hz"):
        preprocess(str(data), str(tmp_path / "out"), 100, CHUNK)
