"""What is written survives the disk and other runs: a write the disk refuses (full, quota, read-only,
I/O error) ends in one `error:` line and keeps the earlier file; the log never lists an epoch whose
snapshot is not on disk; snapshots carry a checksum of their tensors that loading verifies; and an
output folder is locked while a run writes it.

A full disk is simulated without root. In this process `tempfile.mkstemp`, which atomic_write creates
its temporary file with, hands out /dev/full, where every write fails in the kernel with ENOSPC; in a
script run as a subprocess, fsync of the victim file fails with ENOSPC (see FULL_DISK).
"""

import contextlib
import errno
import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest
import torch
from conftest import ROOT
from helpers import LAYERS, RATE, STACKS, TARGET, TINY_CHUNKS, write_tone

import train
from wavenet import GatedPixelCNN, WaveNet, checkpoint, cli, files, preprocessing, receptive_field
from wavenet.audio import write_wav
from wavenet.errors import UserError
from wavenet.plots import plot_layer_stats, plot_losses
from wavenet.registry import KINDS
from wavenet.run_folder import RunFolder

pytestmark = pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full (Linux)")

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
TINY = ["--dataset", "digits", "-d", "8", "-n", "1", "--out_hidden_dim", "8", "--levels", "4", "-b", "64"]
FULL = "No space left on device"
FIX = "free some space or pick another folder"

# Runs a script on a disk that is full for every file whose path holds argv's last word: fsync, where a
# file system with delayed allocation (ext4, xfs, NFS) reports it, raises ENOSPC. The script's own writers
# are not touched, so this holds whichever way a script writes (atomic_write or a file of its own).
FULL_DISK = """
import errno, os, runpy, sys
victim = sys.argv.pop()
real_fsync = os.fsync
def fsync(fd):
    if victim in os.readlink(f"/proc/self/fd/{fd}"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return real_fsync(fd)
os.fsync = fsync
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# preprocess.py that stops once it starts on the second file, says so (argv[-2]) and waits for argv[-1]
WAITING_DECODE = """
import os, runpy, sys, time
import wavenet.decoding as decoding
go, flag = sys.argv.pop(), sys.argv.pop()
real_chunk_file, calls = decoding.chunk_file, []
def waiting_chunk_file(*args, **kwargs):
    if calls:
        open(flag, "w").close()
        while not os.path.exists(go):
            time.sleep(0.01)
    calls.append(args)
    return real_chunk_file(*args, **kwargs)
decoding.chunk_file = waiting_chunk_file
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# A process that locks folder argv[1] as a script's run does, says "locked" and holds it until stdin closes
HOLDER = """
import sys
from wavenet import files
with files.removing_empty_on_failure():
    files.writable_folder(sys.argv[1], "--out")
    print("locked", flush=True)
    sys.stdin.read()
"""


def full_disk(monkeypatch, victim=""):
    """From now on, temporary files whose name starts with `victim` are /dev/full: writes fail with ENOSPC."""
    real_mkstemp = tempfile.mkstemp

    def full_mkstemp(*args, **kwargs):
        fd, path = real_mkstemp(*args, **kwargs)
        if os.path.basename(path).startswith(victim):
            full = os.open("/dev/full", os.O_WRONLY)
            os.dup2(full, fd)
            os.close(full)
        return fd, path

    monkeypatch.setattr(tempfile, "mkstemp", full_mkstemp)


def script(argv, *, prefix=(), **kwargs):
    """Run a script (argv[0]) from the repository root to its end."""
    return subprocess.run(
        [sys.executable, *prefix, os.path.join(ROOT, argv[0]), *argv[1:]],
        cwd=ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
        **kwargs,
    )


def start(argv, *, prefix=()):
    return subprocess.Popen(
        [sys.executable, *prefix, os.path.join(ROOT, argv[0]), *argv[1:]],
        cwd=ROOT,
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def one_error_line(run):
    """The one `error:` line of a script that failed as a user mistake: exit 2, no traceback."""
    assert run.returncode == 2, run.stderr
    assert "Traceback" not in run.stderr and "Exception ignored" not in run.stderr, run.stderr
    lines = [line for line in run.stderr.replace("\r", "\n").splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error: ")] == [lines[-1]], run.stderr
    return lines[-1]


def contents(folder):
    """{path relative to `folder`: bytes} of every file under it (a folder alone: None)."""
    found = {}
    for parent, folders, names in os.walk(folder):
        for name in folders:
            found[os.path.relpath(os.path.join(parent, name), folder)] = None
        for name in names:
            with open(os.path.join(parent, name), "rb") as f:
                found[os.path.relpath(os.path.join(parent, name), folder)] = f.read()
    return found


def write_tones(folder, count=3, seconds=0.3):
    for i in range(count):
        write_tone(folder / f"p{225 + i % 2}" / f"{i}.wav", seconds, RATE, freq=200 + 70 * i)
    return folder


def preprocess_argv(data, output):
    return ["preprocess.py", "--data", str(data), "--output", str(output), *TINY_CHUNKS, "--workers", "1"]


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """Recordings of two speakers and their preprocessed folder."""
    tmp = tmp_path_factory.mktemp("speech")
    field = receptive_field(STACKS, LAYERS)
    preprocessing.preprocess(
        str(write_tones(tmp / "wav")), str(tmp / "data"), RATE, field + TARGET, receptive_field=field
    )
    return tmp


@pytest.fixture(scope="module")
def wavenet_snapshot(tmp_path_factory):
    """An untrained conditioned WaveNet's model snapshot, for infer_wavenet.py."""
    path = str(tmp_path_factory.mktemp("model") / "wavenet_1")
    torch.manual_seed(0)
    model = WaveNet(16, 8, 8, STACKS, LAYERS, num_speakers=2)
    checkpoint.save(path, checkpoint.model_snapshot(model, {"rate": RATE, "levels": 16, "speakers": ["a", "b"]}))
    return path


# --- 1. a write the disk refuses: one error line, the earlier file kept ---------------------------------


def refuse_fsync(monkeypatch):
    def fsync(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", fsync)


def refuse_rename(monkeypatch):
    def replace(src, dst):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(os, "replace", replace)


def refuse_temporary_file(monkeypatch):
    def mkstemp(*args, **kwargs):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize(
    "refuse,reason,fix",
    [
        (full_disk, FULL, FIX),  # the kernel's ENOSPC from write(2)
        (refuse_fsync, FULL, FIX),
        (refuse_temporary_file, os.strerror(errno.EDQUOT), FIX),
        (refuse_rename, os.strerror(errno.EROFS), "pick another folder"),
    ],
    ids=["write", "fsync", "create", "rename"],
)
def test_a_refused_write_names_the_file_and_the_fix_and_keeps_the_old_file(tmp_path, monkeypatch, refuse, reason, fix):
    path = str(tmp_path / "file")
    files.atomic_write(path, lambda f: f.write(b"old"))
    refuse(monkeypatch)
    with pytest.raises(files.WriteError) as caught:
        files.atomic_write(path, lambda f: f.write(b"new" * 100_000))
    assert str(caught.value) == f"cannot write {path!r} ({reason}); {fix}"
    assert isinstance(caught.value, UserError) and isinstance(caught.value, OSError)
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["file"], "the temporary file is removed"
    assert (tmp_path / "file").read_bytes() == b"old"


def test_errors_of_the_writer_itself_pass_through(tmp_path):
    """An OSError the write callback raises on its own (reading an input, say) is not the disk's."""

    def read_missing(f):
        f.write(b"x")
        (tmp_path / "missing").read_bytes()

    with pytest.raises(FileNotFoundError):
        files.atomic_write(str(tmp_path / "file"), read_missing)
    with pytest.raises(UserError, match="^nothing usable$"):
        files.atomic_write(str(tmp_path / "file"), lambda f: (_ for _ in ()).throw(UserError("nothing usable")))
    assert os.listdir(tmp_path) == []


def write_snapshot(path):
    checkpoint.save(path, checkpoint.model_snapshot(GatedPixelCNN(3, 8, 1, 8, 4), {"levels": 4}))


def write_log(path):
    history = [{"epoch": 1, "iteration": 5, "train_bits_per_dim": 1.0, "val_bits_per_dim": 1.1}]
    RunFolder(os.path.dirname(path), KINDS["GatedPixelCNN"], {}, {}).write_log(history)


def write_stats_png(path):
    stats = {"data": {"percentiles": list(range(7))}, "grad": None}
    assert plot_layer_stats([{"iteration": i, "stats": {"w": stats}} for i in (1, 2)], path) == 1


WRITERS = {  # file name: how a module writes it (torch.save, numpy, soundfile, matplotlib, json)
    "snapshot_iter_1": write_snapshot,
    "log.json": write_log,
    "loss.png": lambda path: plot_losses([{"iteration": 5, "train_bits_per_dim": 1, "val_bits_per_dim": 1}], path),
    "stats_data.png": write_stats_png,
    "sample_0.wav": lambda path: write_wav(path, np.sin(np.arange(50_000) / 10), RATE),
}


@contextlib.contextmanager
def disk_fills_up(monkeypatch, victim, limit=64):
    """Writes past `limit` bytes of any file fail with EFBIG (RLIMIT_FSIZE): the first bytes land, as on a
    disk that fills up while a file is written (`victim` is not needed: the block writes one file)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    previous = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # else the kernel's signal ends the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous)


@contextlib.contextmanager
def disk_is_full(monkeypatch, victim):
    full_disk(monkeypatch, victim)
    yield
    monkeypatch.undo()


@pytest.mark.parametrize("name", WRITERS)
@pytest.mark.parametrize(
    "disk,reason", [(disk_is_full, FULL), (disk_fills_up, os.strerror(errno.EFBIG))], ids=["full", "fills-up"]
)
def test_every_writer_reports_a_full_disk_and_keeps_its_earlier_file(name, disk, reason, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    path = str(out / name)
    write = WRITERS[name]
    write(path)
    before = contents(out)
    with pytest.raises(files.WriteError) as caught, disk(monkeypatch, f".{name}."):
        write(path)
    assert str(caught.value) == f"cannot write {path!r} ({reason}); {FIX}"
    assert contents(out) == before, "the earlier file stays, no temporary file is left"


def test_a_full_disk_ends_preprocess_with_one_error_line(speech, tmp_path):
    """As a user runs it: preprocess.py on a disk that fills up while it writes its codes."""
    out = tmp_path / "data"
    assert script(preprocess_argv(speech / "wav", out)).returncode == 0
    before = contents(out)
    run = script(preprocess_argv(speech / "wav", out) + ["vctk_codes.npy"], prefix=("-c", FULL_DISK))
    line = one_error_line(run)
    assert line.startswith("error: cannot write ") and "vctk_codes.npy" in line, line
    assert f"({FULL}); free some space or pick another" in line, line
    assert contents(out) == before, "the earlier output stays whole, nothing is left beside it"


def test_a_full_disk_ends_infer_wavenet_with_one_error_line(wavenet_snapshot, tmp_path):
    out = tmp_path / "samples"
    run = script(
        [
            "infer_wavenet.py",
            "-m",
            wavenet_snapshot,
            "-c",
            "2",
            "--length",
            "20",
            "-o",
            str(out),
            "--method",
            "torch",
            "--plot",
            ".sample_1.png.",
        ],
        prefix=("-c", FULL_DISK),
    )
    png = os.path.join(out, "sample_1.png")
    assert one_error_line(run) == f"error: cannot write {png!r} ({FULL}); {FIX}"
    assert sorted(os.listdir(out)) == ["sample_0.png", "sample_0.wav", "sample_1.wav"]


def test_a_torn_zip_from_torch_is_a_write_error(tmp_path, monkeypatch):
    """torch's zip writer failing on its own (no OSError reached Python) is reported like a full disk."""

    def failing_save(obj, f):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 46 vs 0")

    monkeypatch.setattr(torch, "save", failing_save)
    path = str(tmp_path / "snapshot_iter_1")
    with pytest.raises(files.WriteError, match=f"cannot write {path!r} \\(the zip writer failed: .*\\); {FIX}"):
        write_snapshot(path)
    assert os.listdir(tmp_path) == []


# --- 2. the log never lists an epoch whose snapshot is not on disk ---------------------------------------


@pytest.mark.parametrize("every", [[], ["--snapshot_every", "1000"]], ids=["per-epoch", "snapshot-every"])
def test_a_failed_epoch_snapshot_leaves_the_log_as_it_was(tmp_path, monkeypatch, every):
    """A resume whose epoch-end snapshot fails (full disk) records nothing; freed, it resumes as a straight run.

    --snapshot_every 1000 is longer than the run: the epoch ends still write the trainer snapshot."""
    out, straight = str(tmp_path / "run"), str(tmp_path / "straight")
    train.main(TINY + every + ["-e", "1", "-o", out])
    log = tmp_path / "run" / "log.json"
    assert [r["epoch"] for r in json.loads(log.read_text())] == [1]
    first = checkpoint.resolve(out, "snapshot_iter_")
    before = {name: (tmp_path / "run" / name).read_bytes() for name in ("log.json", "loss.png")}
    with monkeypatch.context() as m:
        full_disk(m, victim=".snapshot_iter_")
        with pytest.raises(files.WriteError, match=FULL):
            train.main(TINY + every + ["-e", "2", "-o", out, "--resume", out])
    assert {name: (tmp_path / "run" / name).read_bytes() for name in before} == before
    assert checkpoint.resolve(out, "snapshot_iter_") == first, "the epoch-1 snapshot is still the newest"
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")]
    train.main(TINY + every + ["-e", "2", "-o", out, "--resume", out])
    train.main(TINY + every + ["-e", "2", "-o", straight])
    a, b = (checkpoint.load(checkpoint.resolve(d, "snapshot_iter_")) for d in (out, straight))
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    assert (
        [r["val_nll"] for r in json.loads(log.read_text())]
        == [r["val_nll"] for r in a["state"]["history"]]
        == [r["val_nll"] for r in b["state"]["history"]]
    )


# --- 3. snapshots carry a checksum of their tensors ---------------------------------------------------


def flip_bits(snapshot):
    weight = (
        snapshot["model"]["out2.weight"]
        if "out2.weight" in snapshot["model"]
        else next(t for t in snapshot["model"].values() if t.dtype == torch.float32 and t.numel() >= 96)
    )
    weight.view(torch.int32).view(-1)[:96] ^= 1 << 20  # 96 weights, one mantissa bit each


def flip_optimizer_bit(snapshot):
    state = next(iter(snapshot["optimizer"]["state"].values()))
    state["exp_avg"].view(torch.int32).view(-1)[0] ^= 1


def flip_rng_bit(snapshot):
    snapshot["rng"]["torch"][100] ^= 1


@pytest.fixture(scope="module")
def trainer_snapshot(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("trained") / "run")
    train.main(TINY + ["-e", "1", "-o", out])
    return checkpoint.resolve(out, "snapshot_iter_")


def change_image_height(snapshot):
    snapshot["meta"]["height"] = 64  # one changed byte in the pickle: infer.py drew 8x64 images, exit 0


def change_learning_rate(snapshot):
    snapshot["optimizer"]["param_groups"][0]["lr"] *= 2


@pytest.mark.parametrize(
    "corrupt", [flip_bits, flip_optimizer_bit, flip_rng_bit, change_image_height, change_learning_rate]
)
def test_a_snapshot_that_changed_is_refused(trainer_snapshot, tmp_path, corrupt):
    snapshot = torch.load(trainer_snapshot, weights_only=True)
    assert snapshot["checksum"].startswith("sha256:") and snapshot["checksum_all"].startswith("sha256:")
    corrupt(snapshot)
    path = str(tmp_path / "snapshot_iter_23")
    torch.save(snapshot, path)  # the checksum is not recomputed: as if the disk flipped the bits
    with pytest.raises(UserError) as caught:
        checkpoint.load(path)
    assert str(caught.value) == (
        f"{path!r} is corrupted (checksum mismatch: it changed after it was written, a failing disk "
        "or copy); use another snapshot or retrain"
    )


def test_a_snapshot_of_an_earlier_version_is_checked_as_far_as_it_can_be(trainer_snapshot, tmp_path):
    snapshot = torch.load(trainer_snapshot, weights_only=True)
    del snapshot["checksum_all"]  # as the version before it wrote them: the tensors' checksum alone
    path = str(tmp_path / "snapshot_iter_23")
    torch.save(snapshot, path)
    assert checkpoint.load(path)["state"] == snapshot["state"]
    flip_bits(snapshot)
    torch.save(snapshot, path)
    with pytest.raises(UserError, match="is corrupted"):
        checkpoint.load(path)


def test_the_checksum_sees_values_dtypes_shapes_and_places():
    model = GatedPixelCNN(3, 8, 1, 8, 4)
    snapshot = checkpoint.model_snapshot(model, {"levels": 4})
    digest = checkpoint.snapshot_checksum(snapshot)
    assert checkpoint.snapshot_checksum({**snapshot, "checksum": "anything"}) == digest, "its own key aside"
    (a, ta), (b, tb) = [(n, t) for n, t in snapshot["model"].items() if t.shape == (8,)][:2]
    changes = [{a: ta.double()}, {a: ta.reshape(2, 4)}, {a: tb, b: ta}]
    for change in changes:
        assert checkpoint.snapshot_checksum({**snapshot, "model": {**snapshot["model"], **change}}) != digest, change
    for meta in ({"levels": 16}, {"levels": 4.0}, {"levels": "4"}, {"levels": 4, "height": 8}):
        assert checkpoint.snapshot_checksum({**snapshot, "meta": meta}) != digest, meta
    # the "checksum" key covers the tensors alone, as earlier versions, which check only it, computed it
    assert checkpoint.snapshot_checksum({**snapshot, "meta": {"levels": 16}}, values=False) == (
        checkpoint.snapshot_checksum(snapshot, values=False)
    )
    assert checkpoint.snapshot_checksum({**snapshot, "checksum_all": "x"}) == digest, "both keys aside"


def test_earlier_versions_still_read_this_versions_snapshots(tmp_path):
    # the tensors-only check of the version before checksum_all (commit 4f8a192), applied to a new snapshot
    def earlier_tensor_checksum(snapshot):
        digest = hashlib.sha256()

        def visit(value, where):
            if isinstance(value, torch.Tensor):
                t = value.detach().cpu().contiguous()
                digest.update(f"{where}|{t.dtype}|{tuple(t.shape)}|".encode())
                digest.update(t.reshape(-1).view(torch.uint8).numpy())
            elif isinstance(value, dict):
                for key, item in value.items():
                    if not (where == "" and key == "checksum"):
                        visit(item, f"{where}/{key!r}")
            elif isinstance(value, (list, tuple)):
                for i, item in enumerate(value):
                    visit(item, f"{where}/{i}")

        visit(snapshot, "")
        return "sha256:" + digest.hexdigest()

    path = str(tmp_path / "pixelcnn_1")
    checkpoint.save(path, checkpoint.model_snapshot(GatedPixelCNN(3, 8, 1, 8, 4), {"levels": 4}))
    snapshot = torch.load(path, weights_only=True)
    assert snapshot["checksum"] == earlier_tensor_checksum(snapshot)


def test_a_corrupted_snapshot_is_one_error_line_for_the_scripts(trainer_snapshot, tmp_path):
    snapshot = torch.load(trainer_snapshot, weights_only=True)
    flip_bits(snapshot)
    path = str(tmp_path / "snapshot_iter_23")
    torch.save(snapshot, path)
    run = script(["infer.py", "-m", path, "-c", "1", "-o", str(tmp_path / "x.png")])
    assert one_error_line(run).startswith(f"error: {path!r} is corrupted (checksum mismatch")
    assert not os.path.exists(tmp_path / "x.png")


def test_snapshots_without_a_checksum_still_load():
    """Earlier versions wrote no checksum (tests/test_checkpoint.py and test_training.py use them fully)."""
    old = os.path.join(ROOT, "tests", "fixtures", "c5e1cea")
    for name in ("snapshot_iter_5", "snapshot_iter_6", "pixelcnn_6", "wavenet_5"):
        snapshot = checkpoint.load(os.path.join(old, name))
        assert "checksum" not in snapshot and snapshot["format"] == checkpoint.FORMAT


# --- 4. an output folder is locked while a run writes it ----------------------------------------------


def in_use(flag, folder, pid):
    return (
        f"error: {flag} {str(folder)!r} is in use by another run (pid {pid}); wait for it to finish or pick "
        "another folder"
    )


def test_two_preprocess_runs_into_one_output(speech, tmp_path):
    """The first, stopped while writing its codes, keeps the folder; the second is refused and touches nothing."""
    out, flag, go = tmp_path / "data", str(tmp_path / "writing"), str(tmp_path / "go")
    first = start(preprocess_argv(speech / "wav", out) + [flag, go], prefix=("-c", WAITING_DECODE))
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(flag):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.01)
        during = contents(out)
        assert files.LOCK_FILE in during and any(name.endswith(".tmp") for name in during)
        second = script(preprocess_argv(speech / "wav", out))
        assert one_error_line(second) == in_use("--output", out, first.pid)
        assert contents(out) == during, "the second run wrote and removed nothing"
        open(go, "w").close()
        _, stderr = first.communicate(timeout=120)
        assert first.returncode == 0, stderr
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    assert sorted(os.listdir(out)) == [
        "vctk_codes.npy",
        "vctk_meta.json",
        "vctk_recordings.npy",
        "vctk_speakers.npy",
    ], "the lock file goes when the run ends"
    assert contents(out)["vctk_codes.npy"] == (speech / "data" / "vctk_codes.npy").read_bytes()


def test_train_and_infer_refuse_a_folder_in_use_and_a_killed_run_leaves_it_free(wavenet_snapshot, tmp_path):
    out = tmp_path / "busy"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out)],
        cwd=ROOT,
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        run = script(["train.py", *TINY, "-e", "1", "-o", str(out)])
        assert one_error_line(run) == in_use("--out", out, holder.pid)
        run = script(["infer_wavenet.py", "-m", wavenet_snapshot, "-c", "1", "--length", "8", "-o", str(out)])
        assert one_error_line(run) == in_use("--output", out, holder.pid)
        assert os.listdir(out) == [files.LOCK_FILE], "neither wrote anything"
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock, the file stays behind
        holder.communicate()
    assert holder.returncode == -signal.SIGKILL and os.listdir(out) == [files.LOCK_FILE]
    run = script(["infer_wavenet.py", "-m", wavenet_snapshot, "-c", "1", "--length", "8", "-o", str(out)])
    assert run.returncode == 0, run.stderr
    assert sorted(os.listdir(out)) == ["sample_0.wav"], "the stale lock file was taken over, then removed"


def test_the_lock_is_released_and_its_folder_still_removed_on_failure(tmp_path):
    new = tmp_path / "new" / "out"
    with pytest.raises(UserError, match="failed"), files.removing_empty_on_failure():
        files.writable_folder(str(new), "--out")
        files.writable_folder(str(new), "--out")  # the same run asks again: not locked out by itself
        assert os.listdir(new) == [files.LOCK_FILE]
        assert (new / files.LOCK_FILE).read_text() == f"{os.getpid()}\n"
        raise UserError("failed")
    assert os.listdir(tmp_path) == [], "both folders it created are removed, the lock file first"
    with files.removing_empty_on_failure():
        files.writable_folder(str(new), "--out")
    assert os.listdir(new) == []


def test_only_a_scripts_main_process_locks(tmp_path, monkeypatch):
    """Outside cli.run (a test calling main) nothing is locked; under torchrun only rank 0 locks."""
    files.writable_folder(str(tmp_path / "a"), "--out")
    assert os.listdir(tmp_path / "a") == []
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    with files.removing_empty_on_failure():
        files.writable_folder(str(tmp_path / "a"), "--out")
        assert os.listdir(tmp_path / "a") == []


def test_cli_run_reports_a_folder_in_use(tmp_path, capsys):
    """In this process too: a second lock on the folder is another run's."""
    with files.folder_lock(str(tmp_path), "--out"), pytest.raises(SystemExit) as caught:
        cli.run(lambda: files.writable_folder(str(tmp_path), "--output"))
    assert caught.value.code == 2
    assert capsys.readouterr().err == in_use("--output", tmp_path, os.getpid()) + "\n"
    assert os.listdir(tmp_path) == []
