"""Training survives being killed: SIGKILL at any moment (even mid-save) leaves a loadable snapshot, and a
resumed run ends bit-identical to an uninterrupted one; Ctrl-C snapshots and says how to resume; a
non-finite loss stops the run and names the snapshot to resume from.

The scripts run as subprocesses, as a user runs them, with one thread each (tests/conftest.py's
OMP_NUM_THREADS=1: bit-identical runs need the same thread count, and tiny models only lose time to more
threads on a shared machine).
"""

import os
import random
import shutil
import signal
import subprocess
import sys
import time

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
    assert_one_line_error,
    two_speaker_corpus,
)

from wavenet import checkpoint, files, preprocessing, receptive_field
from wavenet.errors import UserError
from wavenet.registry import TRAINER_SNAPSHOT as SNAPSHOT_PREFIX

# 23 iterations per epoch of digits at -b 64: 4 epochs are 92 iterations, a multiple of --snapshot_every 4
PIXELCNN = ["train.py", *TINY_PIXELCNN, "-b", "64", "-e", "4", "--snapshot_every", "4", "--seed", "3"]
WAVENET = ["train_wavenet.py", *TINY_WAVENET, "-b", "16", "-e", "3", "--snapshot_every", "3", "--seed", "5"]
# A run whose torch.save of the snapshot at SAVE_STALLS writes half its bytes, says so, and hangs:
# the test SIGKILLs it there, in the middle of an atomic save.
SAVE_STALLS = 12
STALLING_SAVE = f"""
import io, runpy, sys, time, torch
flag = sys.argv.pop()  # the file that tells the test
real_save = torch.save
def stalling_save(obj, f, *args, **kwargs):
    if isinstance(obj, dict) and obj.get("state", {{}}).get("iteration") == {SAVE_STALLS}:
        buffer = io.BytesIO()
        real_save(obj, buffer, *args, **kwargs)
        f.write(buffer.getvalue()[:len(buffer.getvalue()) // 2])
        f.flush()
        open(flag, "w").close()
        time.sleep(600)
    return real_save(obj, f, *args, **kwargs)
torch.save = stalling_save
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""

# preprocess.py that hangs once it starts on the second file, after saying so: interrupted mid-write
STALLING_DECODE = """
import runpy, sys, time
import wavenet.decoding as decoding
flag = sys.argv.pop()
real_chunk_file, calls = decoding.chunk_file, []
def stalling_chunk_file(*args, **kwargs):
    if calls:
        open(flag, "w").close()
        time.sleep(600)
    calls.append(args)
    return real_chunk_file(*args, **kwargs)
decoding.chunk_file = stalling_chunk_file
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""


def start(argv, *, prefix=(), **kwargs):
    """Popen a script (argv[0]) from the repository root."""
    return subprocess.Popen(
        [sys.executable, *prefix, os.path.join(ROOT, argv[0]), *argv[1:]],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def finish(argv):
    """Run a script to its end; fails the test unless it exits 0."""
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def wait_for(condition, process, timeout=300):
    """Poll `condition` until it holds; fails if the process ends first."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended first: {process.communicate()[1][-3000:]}"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def snapshots(out):
    """Trainer snapshot iterations in `out`, sorted."""
    return sorted(
        int(name[len(SNAPSHOT_PREFIX) :])
        for name in os.listdir(out)
        if name.startswith(SNAPSHOT_PREFIX) and name[len(SNAPSHOT_PREFIX) :].isdigit()
    )


def kill(process):
    assert process.poll() is None, "the run ended before the kill"
    process.kill()
    process.communicate()
    assert process.returncode == -signal.SIGKILL


def assert_bit_identical(out_a, out_b):
    """The newest trainer snapshots of two runs hold the same weights, optimizer, counters and RNG states."""
    a = checkpoint.load(checkpoint.resolve(out_a, SNAPSHOT_PREFIX))
    b = checkpoint.load(checkpoint.resolve(out_b, SNAPSHOT_PREFIX))
    assert a["model"].keys() == b["model"].keys()
    for name in a["model"]:
        assert torch.equal(a["model"][name], b["model"][name]), name
    for key, state in a["optimizer"]["state"].items():
        for name, value in state.items():
            assert torch.equal(value, b["optimizer"]["state"][key][name]), (key, name)
    strip = ("elapsed",)  # wall time differs, of course
    state_a = {k: v for k, v in a["state"].items() if k not in strip and k != "history"}
    state_b = {k: v for k, v in b["state"].items() if k not in strip and k != "history"}
    assert state_a == state_b
    assert [{k: v for k, v in r.items() if k not in strip} for r in a["state"]["history"]] == [
        {k: v for k, v in r.items() if k not in strip} for r in b["state"]["history"]
    ]
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    assert torch.equal(a["rng"]["numpy"][1], b["rng"]["numpy"][1]) and a["rng"]["python"] == b["rng"]["python"]


@pytest.fixture(scope="module")
def pixelcnn_straight(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("pixelcnn") / "straight")
    finish(PIXELCNN + ["-o", out])
    return out


def test_pixelcnn_killed_in_the_middle_of_a_save_resumes_bit_identical(pixelcnn_straight, tmp_path):
    out, flag = str(tmp_path / "run"), str(tmp_path / "saving")
    run = start(PIXELCNN + ["-o", out, flag], prefix=("-c", STALLING_SAVE))
    wait_for(lambda: os.path.exists(flag), run)
    kill(run)
    torn = [name for name in os.listdir(out) if name.startswith(f".{SNAPSHOT_PREFIX}{SAVE_STALLS}.")]
    assert len(torn) == 1, os.listdir(out)  # the half-written temporary file
    assert snapshots(out) == [SAVE_STALLS - 4], "the previous snapshot stays, the torn one has no name"
    previous = checkpoint.load(checkpoint.resolve(out, SNAPSHOT_PREFIX))
    assert previous["state"]["iteration"] == SAVE_STALLS - 4
    finish(PIXELCNN + ["-o", out, "--resume", out])
    assert_bit_identical(pixelcnn_straight, out)
    assert not [name for name in os.listdir(out) if name.endswith(".tmp")], "the torn file is cleaned up"


def test_pixelcnn_killed_at_a_random_moment_resumes_bit_identical(pixelcnn_straight, tmp_path):
    out = str(tmp_path / "run")
    run = start(PIXELCNN + ["-o", out])
    wait_for(lambda: os.path.isdir(out) and snapshots(out), run)
    time.sleep(random.Random(os.getpid()).uniform(0, 0.3))
    kill(run)
    assert checkpoint.load(checkpoint.resolve(out, SNAPSHOT_PREFIX))["state"]["iteration"] > 0
    finish(PIXELCNN + ["-o", out, "--resume", out])
    assert_bit_identical(pixelcnn_straight, out)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """A preprocessed folder of tones from two speakers, for a tiny conditioned WaveNet."""
    return two_speaker_corpus(tmp_path_factory.mktemp("speech"))


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGKILL], ids=["ctrl-c", "kill"])
def test_preprocess_interrupted_keeps_the_previous_output(speech, tmp_path, signum):
    out, flag = tmp_path / "data", str(tmp_path / "decoding")
    shutil.copytree(speech, out)
    before = {name: (out / name).read_bytes() for name in os.listdir(out)}
    wav = os.path.join(os.path.dirname(speech), "wav")
    argv = ["preprocess.py", "--data", wav, "--output", str(out), *TINY_CHUNKS, "--workers", "1", flag]
    run = start(argv, prefix=("-c", STALLING_DECODE), start_new_session=True)
    wait_for(lambda: os.path.exists(flag), run)
    assert any(name.endswith(".tmp") for name in os.listdir(out)), "stopped while writing"
    os.killpg(run.pid, signum)
    _, stderr = run.communicate(timeout=120)
    if signum == signal.SIGINT:
        assert run.returncode == 130 and stderr.strip().splitlines()[-1] == "interrupted", stderr
        assert sorted(os.listdir(out)) == sorted(before), "no temporary file is left"
    assert {name: (out / name).read_bytes() for name in before} == before


def test_wavenet_killed_at_a_random_moment_resumes_bit_identical(speech, tmp_path):
    straight, out = str(tmp_path / "straight"), str(tmp_path / "run")
    finish(WAVENET + ["-d", speech, "-o", straight])
    run = start(WAVENET + ["-d", speech, "-o", out])
    wait_for(lambda: os.path.isdir(out) and snapshots(out), run)
    time.sleep(random.Random(os.getpid()).uniform(0, 0.2))
    kill(run)
    assert checkpoint.load(checkpoint.resolve(out, SNAPSHOT_PREFIX))["state"]["iteration"] > 0
    finish(WAVENET + ["-d", speech, "-o", out, "--resume", out])
    assert_bit_identical(straight, out)


@pytest.mark.slow
def test_pixelcnn_killed_again_and_again_resumes_bit_identical(pixelcnn_straight, tmp_path):
    out, rng, kills = str(tmp_path / "run"), random.Random(0), 0
    while kills < 5:
        run = start(PIXELCNN + ["-o", out] + (["--resume", out] if kills else []))
        seen = snapshots(out) if kills else []
        wait_for(lambda seen=seen: os.path.isdir(out) and snapshots(out) != seen, run)  # a new snapshot, at least
        time.sleep(rng.uniform(0, 0.2))
        if run.poll() is not None:
            break
        kill(run)
        kills += 1
        assert checkpoint.load(checkpoint.resolve(out, SNAPSHOT_PREFIX))["state"]["iteration"] > 0
    finish(PIXELCNN + ["-o", out, "--resume", out])
    assert kills >= 3, "the run ended too soon to be killed often"
    assert_bit_identical(pixelcnn_straight, out)


def test_ctrl_c_snapshots_and_names_the_snapshot(tmp_path):
    # as a terminal sends it: to the whole process group, DataLoader workers included
    out = str(tmp_path / "run")
    argv = PIXELCNN[: PIXELCNN.index("-e")] + ["-e", "50", "--workers", "1", "-o", out]
    run = start(argv, start_new_session=True)
    wait_for(lambda: os.path.isdir(out) and snapshots(out), run)
    os.killpg(run.pid, signal.SIGINT)
    _, stderr = run.communicate(timeout=120)
    # the shell's status for SIGINT, as Ctrl-C gives anywhere else
    assert_one_line_error(run.returncode, stderr, "error: interrupted at iteration ", expected_status=130)
    last = stderr.replace("\r", "\n").strip().splitlines()[-1]
    path = files.newest(out, SNAPSHOT_PREFIX)
    iteration = path.rsplit("_", 1)[1]
    assert last == f"error: interrupted at iteration {iteration}; to go on, run the same command with --resume {path}"
    assert checkpoint.load(path)["state"]["epoch"] < 50


def test_non_finite_loss_stops_and_keeps_the_last_snapshot(tmp_path):
    out = str(tmp_path / "run")
    argv = PIXELCNN[: PIXELCNN.index("--snapshot_every")] + [
        "--snapshot_every",
        "1",
        "--learning_rate",
        "1e30",
        "-o",
        out,
    ]
    run = subprocess.run(
        [sys.executable, os.path.join(ROOT, argv[0]), *argv[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert_one_line_error(run.returncode, run.stderr, "error: the loss became nan at iteration ")
    last = run.stderr.replace("\r", "\n").strip().splitlines()[-1]
    kept = files.newest(out, SNAPSHOT_PREFIX)
    iteration = int(kept.rsplit("_", 1)[1])
    assert last.startswith(
        f"error: the loss became nan at iteration {iteration + 1}; "
        f"resume from the last snapshot, {kept}, with a smaller --learning_rate"
    ), last
    snapshot = checkpoint.load(kept)
    assert snapshot["state"]["iteration"] == iteration
    assert all(torch.isfinite(value).all() for value in snapshot["model"].values())


def test_resume_with_a_smaller_learning_rate_uses_it(tmp_path):
    # the way out the non-finite loss message gives: the restored Adam state must not bring the old rate back
    import train

    out = str(tmp_path / "run")
    tiny = PIXELCNN[1 : PIXELCNN.index("-e")] + ["-o", out]
    train.main(tiny + ["-e", "1", "--learning_rate", "1e-3", "--weight_decay", "1e-4"])
    train.main(tiny + ["-e", "2", "--learning_rate", "1e-5", "--weight_decay", "0", "--resume", out])
    group = checkpoint.load(checkpoint.resolve(out, SNAPSHOT_PREFIX))["optimizer"]["param_groups"][0]
    assert (group["lr"], group["weight_decay"]) == (1e-5, 0)


def test_a_new_run_never_mixes_with_an_old_one_in_its_folder(tmp_path):
    import train

    out, other = str(tmp_path / "run"), str(tmp_path / "other")
    tiny = PIXELCNN[1 : PIXELCNN.index("-e")] + ["-e", "1"]
    train.main(tiny + ["-o", out])
    shutil.copytree(out, other)
    before = {name: os.path.getmtime(os.path.join(out, name)) for name in os.listdir(out)}
    with pytest.raises(UserError, match=f"already holds a training run .*pass --resume {out} to go on"):
        train.main(tiny + ["--levels", "2", "-o", out])
    with pytest.raises(UserError, match="holds another training run"):
        train.main(tiny + ["-e", "2", "-r", other, "-o", out])
    with pytest.raises(UserError, match="has already trained 1 epoch.*pass --epoch above 1"):
        train.main(tiny + ["-r", out, "-o", out])
    assert {name: os.path.getmtime(os.path.join(out, name)) for name in os.listdir(out)} == before
    train.main(tiny + ["-e", "2", "-r", out, "-o", out])  # the same run goes on
    assert checkpoint.load(checkpoint.resolve(out, SNAPSHOT_PREFIX))["state"]["epoch"] == 2


def test_resume_refuses_data_that_changed(speech, tmp_path):
    import train_wavenet

    wav, out = str(tmp_path / "wav"), str(tmp_path / "run")
    shutil.copytree(os.path.join(os.path.dirname(speech), "wav"), wav)
    flags = WAVENET[1 : WAVENET.index("-e")] + ["-d", speech, "-o", out]
    train_wavenet.main(flags + ["-e", "1"])
    # the same folder preprocessed again with one more recording
    shutil.copy(os.path.join(wav, "p225", "0.wav"), os.path.join(wav, "p225", "4.wav"))
    field = receptive_field(STACKS, LAYERS)
    data = str(tmp_path / "data")
    preprocessing.preprocess(wav, data, RATE, field + TARGET, receptive_field=field)
    flags[flags.index(speech)] = data
    with pytest.raises(UserError, match=r"was trained on \d+ training and \d+ validation items; this data gives"):
        train_wavenet.main(flags + ["-e", "2", "-r", out])


def test_a_folder_with_only_a_trainer_snapshot_names_it(tmp_path):
    import infer
    import train

    out = str(tmp_path / "run")
    train.main(PIXELCNN[1 : PIXELCNN.index("-e")] + ["-e", "1", "-o", out])
    for name in os.listdir(out):
        if name.startswith("pixelcnn_"):
            os.remove(os.path.join(out, name))
    with pytest.raises(UserError, match=f"holds no pixelcnn_<N> snapshot.*trainer snapshot {out}/snapshot_iter_"):
        infer.main(["-m", out, "-o", str(tmp_path / "x.png")])


def test_resume_refuses_another_validation_split(speech, tmp_path):
    import train_wavenet

    flags = WAVENET[1:] + ["-d", speech, "-o", str(tmp_path / "run")]  # a later -e wins
    assert flags[flags.index("--seed") + 1] == "5"
    train_wavenet.main(flags + ["-e", "1"])
    flags[flags.index("--seed") + 1] = "7"  # holds out another recording of the same size
    with pytest.raises(UserError, match="held out other validation items .* pass --seed 5"):
        train_wavenet.main(flags + ["-e", "2", "-r", str(tmp_path / "run")])


def test_a_smaller_model_trains_on_data_cut_for_a_larger_one(speech, tmp_path):
    import train_wavenet

    flags = WAVENET[1:] + ["-d", speech, "-e", "1"]  # a later -e wins
    flags[flags.index("--layers_num") + 1] = str(LAYERS - 1)
    train_wavenet.main(flags + ["-o", str(tmp_path / "smaller")])
    meta = checkpoint.load(checkpoint.resolve(str(tmp_path / "smaller"), SNAPSHOT_PREFIX))["meta"]
    assert (meta["receptive_field"], meta["target_length"]) == (receptive_field(STACKS, LAYERS - 1), TARGET)
    flags[flags.index("--layers_num") + 1] = str(LAYERS + 1)
    with pytest.raises(UserError, match="was preprocessed for a receptive field of 17 samples .* needs 33"):
        train_wavenet.main(flags + ["-o", str(tmp_path / "larger")])
