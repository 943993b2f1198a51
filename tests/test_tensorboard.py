"""--tensorboard: the events read back with TensorBoard's own reader hold every step once, also across resumes,
the epochs' metrics as log.json has them, --stats histograms and each epoch's sample; and the flag changes no
weight, and runs without it do not load TensorBoard."""

import math
import os
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, TINY_PIXELCNN, TINY_WAVENET, assert_one_line_error, read_log, run_main
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import train
from wavenet import checkpoint
from wavenet.tensorboard_log import SAMPLE_IMAGES, SAMPLE_SECONDS
from wavenet.training import Trainer

TINY = [*TINY_PIXELCNN, "-b", "64"]  # 23 iterations an epoch of the digits
EPOCH = 23
KEEP_ALL = {"scalars": 0, "images": 0, "audio": 0, "histograms": 0}  # 0: keep every event, no reservoir sampling


def events(out):
    """The run's events as TensorBoard shows them (purged steps hidden)."""
    board = EventAccumulator(str(out), size_guidance=KEEP_ALL)
    board.Reload()
    return board


def steps(board, tag):
    return [e.step for e in board.Scalars(tag)]


def values(board, tag):
    return [e.value for e in board.Scalars(tag)]


def test_scalars_and_samples_match_log_json(tmp_path):
    out = tmp_path / "run"
    train.main(TINY + ["-e", "2", "-o", str(out), "--tensorboard"])
    board, log = events(out), read_log(out)
    assert steps(board, "step/bits_per_dim") == list(range(1, 2 * EPOCH + 1))
    assert steps(board, "step/grad_norm") == steps(board, "step/learning_rate") == list(range(1, 2 * EPOCH + 1))
    assert all(math.isfinite(v) and v > 0 for v in values(board, "step/grad_norm"))
    assert values(board, "step/learning_rate") == pytest.approx([1e-3] * 2 * EPOCH)
    for key in ("train_nll", "val_nll", "train_bits_per_dim", "val_bits_per_dim"):
        assert steps(board, f"epoch/{key}") == [EPOCH, 2 * EPOCH]
        assert values(board, f"epoch/{key}") == pytest.approx([r[key] for r in log], rel=1e-6)
    # the per-step values average to the epoch's (equal batches but the last, so not exactly)
    first_epoch = values(board, "step/bits_per_dim")[:EPOCH]
    assert sum(first_epoch) / EPOCH == pytest.approx(log[0]["train_bits_per_dim"], rel=0.05)
    images = board.Images("sample/images")
    assert [e.step for e in images] == [EPOCH, 2 * EPOCH]
    # one row of SAMPLE_IMAGES 8x8 digits, enlarged to 32x32, with 2-pixel lines between them
    assert (images[0].height, images[0].width) == (32 + 4, SAMPLE_IMAGES * 34 + 2)
    assert "histograms" not in board.Tags() or not board.Tags()["histograms"]  # only with --stats


def straight_and_resumed(tmp_path, monkeypatch, crash_at, *flags):
    """A straight 2-epoch run and one that stops at iteration `crash_at` (an exception that leaves no snapshot of
    its own: a crash) and is resumed from its last trainer snapshot; both with --tensorboard and `flags`."""
    straight, split = tmp_path / "straight", tmp_path / "split"
    train.main(TINY + ["-e", "2", "-o", str(straight), "--tensorboard", *flags])
    step = Trainer.step

    def crash(self, batch):
        if self.state.iteration + 1 == crash_at:
            raise RuntimeError("the machine went away")
        return step(self, batch)

    monkeypatch.setattr(Trainer, "step", crash)
    with pytest.raises(RuntimeError, match="went away"):
        train.main(TINY + ["-e", "2", "-o", str(split), "--tensorboard", *flags])
    monkeypatch.setattr(Trainer, "step", step)
    train.main(TINY + ["-e", "2", "-o", str(split), "--tensorboard", "--resume", str(split), *flags])
    return events(straight), events(split)


@pytest.mark.parametrize(
    "crash_at, flags",
    [
        (35, ["--snapshot_every", "10"]),  # steps 31..34 were written after the snapshot at 30: written again
        (EPOCH + 3, []),  # from the epoch-end snapshot, whose epoch events and sample come after it
    ],
    ids=["mid-epoch", "after-an-epoch"],
)
def test_a_resumed_run_shows_every_step_once(tmp_path, monkeypatch, crash_at, flags):
    straight, resumed = straight_and_resumed(tmp_path, monkeypatch, crash_at, *flags)
    for tag in ("step/bits_per_dim", "step/grad_norm"):
        assert steps(resumed, tag) == list(range(1, 2 * EPOCH + 1)), tag
        assert values(resumed, tag) == values(straight, tag), tag  # resume is exact, so are its events
    for key in ("val_nll", "train_bits_per_dim"):
        assert steps(resumed, f"epoch/{key}") == [EPOCH, 2 * EPOCH]
        assert values(resumed, f"epoch/{key}") == values(straight, f"epoch/{key}")
    assert [e.step for e in resumed.Images("sample/images")] == [EPOCH, 2 * EPOCH]
    assert len([f for f in os.listdir(tmp_path / "split") if f.startswith("events.out.tfevents.")]) == 2


def test_a_new_run_hides_the_events_of_one_that_stopped_before_its_first_snapshot(tmp_path, monkeypatch):
    out = tmp_path / "run"
    step = Trainer.step

    def crash(self, batch):
        if self.state.iteration + 1 == 5:
            raise RuntimeError("crash")
        return step(self, batch)

    monkeypatch.setattr(Trainer, "step", crash)
    with pytest.raises(RuntimeError):
        train.main(TINY + ["-e", "1", "-o", str(out), "--tensorboard", "--learning_rate", "0.1"])
    monkeypatch.setattr(Trainer, "step", step)
    train.main(TINY + ["-e", "1", "-o", str(out), "--tensorboard"])  # nothing to resume: a new run
    assert steps(events(out), "step/bits_per_dim") == list(range(1, EPOCH + 1))


def test_tensorboard_changes_no_weight(tmp_path):
    for name, flags in (("plain", []), ("board", ["--tensorboard"])):
        train.main(TINY + ["-e", "2", "-o", str(tmp_path / name), *flags])
    plain, board = (
        checkpoint.load(checkpoint.resolve(str(tmp_path / n), "snapshot_iter_")) for n in ("plain", "board")
    )
    for key in plain["model"]:
        assert torch.equal(plain["model"][key], board["model"][key]), key
    assert torch.equal(plain["rng"]["torch"], board["rng"]["torch"])  # the samples drew from generators of their own


def test_stats_add_histograms_of_weights_and_gradients(tmp_path):
    out = tmp_path / "run"
    train.main(TINY + ["-e", "1", "-o", str(out), "--tensorboard", "--stats", "--log_every", "10"])
    board = events(out)
    tags = board.Tags()["histograms"]
    for name, _ in train.GatedPixelCNN(3, 8, 1, 8, 4).named_parameters():
        assert f"weights/{name}" in tags and f"gradients/{name}" in tags, name
    histogram = board.Histograms("weights/blocks.0.horizontal.weight")
    assert [e.step for e in histogram] == [10, 20, EPOCH]
    assert histogram[0].histogram_value.num == train.GatedPixelCNN(3, 8, 1, 8, 4).blocks[0].horizontal.weight.numel()


def test_wavenet_events_and_an_audio_sample(world, tmp_path):
    import train_wavenet

    out = tmp_path / "wn"
    train_wavenet.main(TINY_WAVENET + ["-b", "16", "-e", "2", "-d", world["data"], "-o", str(out), "--tensorboard"])
    board, log = events(out), read_log(out)
    iterations = [r["iteration"] for r in log]
    assert steps(board, "epoch/val_nll") == iterations
    assert steps(board, "step/bits_per_dim") == list(range(1, iterations[-1] + 1))
    audio = board.Audio("sample/audio")
    assert [e.step for e in audio] == iterations
    rate = checkpoint.load(world["wn_model"])["meta"]["rate"]
    assert audio[0].sample_rate == rate and audio[0].length_frames == round(SAMPLE_SECONDS * rate)


@pytest.mark.slow  # a subprocess of its own: out of CI for time (run with -m slow)
def test_a_run_without_the_flag_does_not_load_tensorboard(tmp_path):
    code = f"""
import sys
sys.path.insert(0, {ROOT!r})
import train
train.main({TINY + ["-e", "1", "-o", str(tmp_path / "run")]!r})
loaded = sorted(m for m in sys.modules if m.startswith(("tensorboard", "torch.utils.tensorboard")))
print(loaded)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "[]"
    assert not [f for f in os.listdir(tmp_path / "run") if f.startswith("events.")]


def test_without_the_tensorboard_package_the_flag_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # `import` of it raises ImportError
    status = run_main("train.py", TINY + ["-e", "1", "-o", str(tmp_path / "run"), "--tensorboard"], monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, "--tensorboard needs the tensorboard package")


@pytest.mark.slow  # a subprocess of its own: out of CI for time (run with -m slow)
def test_under_torchrun_only_rank_0_writes_events(tmp_path):
    out = tmp_path / "run"
    env = {name: value for name, value in os.environ.items() if name != "WORLD_SIZE"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    done = subprocess.run(
        [*command, os.path.join(ROOT, "train.py"), *TINY, "-e", "1", "-o", str(out), "--tensorboard"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert len([f for f in os.listdir(out) if f.startswith("events.out.tfevents.")]) == 1
    board, log = events(out), read_log(out)
    assert steps(board, "step/bits_per_dim") == list(range(1, log[-1]["iteration"] + 1))
    assert values(board, "epoch/val_nll") == pytest.approx([log[-1]["val_nll"]], rel=1e-6)
