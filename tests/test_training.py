"""The shared training loop: it learns, it resumes exactly, it logs and snapshots."""

import math
import os
import signal

import pytest
import torch
from helpers import TINY_PIXELCNN, read_log

import train
from wavenet import checkpoint
from wavenet.errors import UserError
from wavenet.image_data import load_images
from wavenet.training import Trainer

TINY = [*TINY_PIXELCNN, "-b", "64"]


def final_parameters(out):
    snapshot = checkpoint.load(
        max(
            (os.path.join(out, f) for f in os.listdir(out) if f.startswith("snapshot_iter_")),
            key=lambda p: int(p.rsplit("_", 1)[1]),
        )
    )
    return snapshot["model"], snapshot["optimizer"], snapshot["state"]


def assert_same_run(a, b):
    model_a, opt_a, state_a = a
    model_b, opt_b, state_b = b
    for name in model_a:
        assert torch.equal(model_a[name], model_b[name]), name
    for key, s in opt_a["state"].items():
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(s[name], opt_b["state"][key][name])
    assert state_a["iteration"] == state_b["iteration"]
    assert [r["val_nll"] for r in state_a["history"]] == [r["val_nll"] for r in state_b["history"]]


def test_resume_at_epoch_end_equals_a_straight_run(tmp_path):
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    train.main(TINY + ["-e", "2", "-o", straight])
    train.main(TINY + ["-e", "1", "-o", split])
    train.main(TINY + ["-e", "2", "-o", split, "--resume", split])
    assert_same_run(final_parameters(straight), final_parameters(split))


def test_resume_inside_an_epoch_equals_a_straight_run(tmp_path, monkeypatch):
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    train.main(TINY + ["-e", "2", "-o", straight])
    step = Trainer.step

    def interrupt_after_30(self, batch):
        result = step(self, batch)
        self.interrupted = signal.SIGINT if self.state.iteration + 1 == 30 else 0  # as if Ctrl-C came during step 30
        return result

    monkeypatch.setattr(Trainer, "step", interrupt_after_30)
    with pytest.raises(UserError, match="run the same command with --resume .*snapshot_iter_30"):
        train.main(TINY + ["-e", "2", "-o", split])
    monkeypatch.setattr(Trainer, "step", step)
    train.main(TINY + ["-e", "2", "-o", split, "--resume", os.path.join(split, "snapshot_iter_30")])
    assert_same_run(final_parameters(straight), final_parameters(split))


def test_log_table_and_snapshots(tmp_path, capsys):
    out = str(tmp_path / "run")
    train.main(TINY + ["-e", "2", "-o", out, "--stats"])
    log = read_log(out)
    assert [r["epoch"] for r in log] == [1, 2]
    for r in log:
        assert math.isclose(r["val_bits_per_dim"], r["val_nll"] / (3 * 8 * 8 * math.log(2)))
        stats = r["stats"]["blocks.0.horizontal.weight"]
        assert len(stats["data"]["percentiles"]) == 7 and stats["grad"]["std"] > 0
    assert os.path.exists(os.path.join(out, "loss.png"))
    model_snapshots = [f for f in os.listdir(out) if f.startswith("pixelcnn_")]
    assert model_snapshots, "a model snapshot for infer.py"
    snapshot = checkpoint.load(os.path.join(out, model_snapshots[0]))
    assert snapshot["meta"] == {"dataset": "digits", "levels": 4, "height": 8, "width": 8}
    assert "val/bpd" in capsys.readouterr().out


def histogram_bits_per_dim(train_q, test_q, levels):
    """Test bits/dim of independent per-sub-pixel categorical distributions (add-one smoothing)."""
    counts = torch.nn.functional.one_hot(train_q.long(), levels).sum(0).double() + 1  # (C, H, W, levels)
    log_p = (counts / counts.sum(-1, keepdim=True)).log()
    test = test_q.long()
    picked = log_p.expand(len(test), *log_p.shape).gather(-1, test.unsqueeze(-1))  # (N, C, H, W, 1)
    return -picked.sum().item() / (test.numel() * math.log(2))


def test_pixelcnn_learns_digits(tmp_path):
    levels = 4
    out = str(tmp_path / "run")
    # -d 16 -n 2 at 3e-3 ends at 0.29-0.31 of the baseline (seeds 0, 1) in half the time of -d 32 -n 3 at 1e-3
    # (0.48-0.59)
    model = ["-d", "16", "-n", "2", "--out_hidden_dim", "16", "--levels", str(levels)]
    train.main(["--dataset", "digits", *model, "-b", "32", "-e", "4", "--learning_rate", "0.003", "-o", out])
    val_bpd = read_log(out)[-1]["val_bits_per_dim"]
    train_q = load_images("digits", "", True, levels).tensors[0]
    test_q = load_images("digits", "", False, levels).tensors[0]
    baseline = histogram_bits_per_dim(train_q, test_q, levels)
    assert val_bpd < 0.6 * math.log2(levels)
    assert val_bpd < 0.6 * baseline, (val_bpd, baseline)


def test_resume_from_a_snapshot_after_the_last_batch_of_an_epoch(tmp_path, monkeypatch):
    # a snapshot at an epoch's last iteration, killed before its evaluation: the resumed run finds no
    # batch left in that epoch, evaluates it, and goes on exactly as a straight run
    straight, split = str(tmp_path / "straight"), str(tmp_path / "split")
    train.main(TINY + ["-e", "2", "-o", straight])
    end_epoch = Trainer.end_epoch

    def killed_before_evaluation(self, elapsed):
        self.save_trainer_snapshot()
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "end_epoch", killed_before_evaluation)
    with pytest.raises(KeyboardInterrupt):
        train.main(TINY + ["-e", "2", "-o", split])
    monkeypatch.setattr(Trainer, "end_epoch", end_epoch)
    train.main(TINY + ["-e", "2", "-o", split, "--resume", split])
    assert_same_run(final_parameters(straight), final_parameters(split))


OLD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "c5e1cea")  # written by version c5e1cea


def test_trainer_snapshots_of_version_c5e1cea_resume(tmp_path):
    import shutil

    import train_wavenet

    pixelcnn, wavenet, corpus = tmp_path / "pixelcnn", tmp_path / "wavenet", tmp_path / "corpus"
    for folder, name in ((pixelcnn, "snapshot_iter_6"), (wavenet, "snapshot_iter_5")):
        folder.mkdir()
        shutil.copy(os.path.join(OLD, name), folder)
    shutil.copytree(os.path.join(OLD, "corpus"), corpus)
    pixelcnn_model = ["-d", "4", "-n", "1", "--out_hidden_dim", "4", "--levels", "4"]
    train.main(
        ["--dataset", "digits", *pixelcnn_model, "-b", "256", "-e", "2", "-o", str(pixelcnn), "--resume", str(pixelcnn)]
    )
    wavenet_model = ["--stacks_num", "1", "--layers_num", "3", "--hidden_dim", "4", "--out_hidden_dim", "4"]
    train_wavenet.main(
        # 0.5: the split of today's split_by_recording that equals the one c5e1cea made with 0.3
        ["-d", str(corpus), *wavenet_model, "-b", "8", "-e", "2", "--val_fraction", "0.5"]
        + ["-o", str(wavenet), "--resume", str(wavenet)]
    )
    for folder, iterations in ((pixelcnn, [6, 12]), (wavenet, [5, 10])):
        log = read_log(folder)
        assert [r["iteration"] for r in log] == iterations  # the old run's epoch, then the resumed one
