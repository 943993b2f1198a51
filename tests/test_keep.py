"""--keep N: only the N newest (best) model snapshots stay, the per-epoch table names each one written, and
resume and `infer.py -m OUT` go on finding the right files."""

import os
import re

import pytest
from helpers import TINY_PIXELCNN, assert_one_line_error, read_log, run_main

import train
from wavenet.training import Trainer

TINY = [*TINY_PIXELCNN, "-b", "64"]  # 23 iterations an epoch of the digits
EPOCH = 23


def model_snapshots(out):
    return sorted((n for n in os.listdir(out) if re.fullmatch(r"pixelcnn_\d+", n)), key=lambda n: int(n[9:]))


def written(out):
    """The model snapshots log.json says the epochs wrote, oldest first."""
    return [r["model_snapshot"] for r in read_log(out) if r.get("model_snapshot")]


def test_keep_leaves_the_newest_and_resume_and_infer_find_them(tmp_path, capsys):
    out = str(tmp_path / "run")
    train.main(TINY + ["-e", "3", "-o", out, "--keep", "2"])
    # the digits improve at every one of the first epochs: each wrote one, the oldest went
    assert written(out) == [f"pixelcnn_{EPOCH * e}" for e in (1, 2, 3)]
    assert model_snapshots(out) == [f"pixelcnn_{EPOCH * 2}", f"pixelcnn_{EPOCH * 3}"]
    train.main(TINY + ["-e", "4", "-o", out, "--keep", "2", "--resume", out])
    assert model_snapshots(out) == [f"pixelcnn_{EPOCH * 3}", f"pixelcnn_{EPOCH * 4}"]
    assert os.listdir(out).count(f"snapshot_iter_{EPOCH * 4}") == 1
    capsys.readouterr()
    assert run_main("infer.py", ["-m", out, "-c", "1", "-o", str(tmp_path / "grid.png")]) == 0
    assert f"using {os.path.join(out, f'pixelcnn_{EPOCH * 4}')} (newest in" in capsys.readouterr().out


def test_by_default_every_model_snapshot_stays(tmp_path):
    out = str(tmp_path / "run")
    train.main(TINY + ["-e", "3", "-o", out])
    assert model_snapshots(out) == written(out) and len(written(out)) == 3


def test_the_table_says_which_epochs_wrote_a_model_snapshot(tmp_path, monkeypatch, capsys):
    # validation that gets worse after the first epoch: only that epoch writes a model snapshot
    evaluate = Trainer.evaluate
    worse = iter([0.0, 1.0e6, 2.0e6])

    def evaluate_worse(self):
        nll_sum, items = evaluate(self)
        return nll_sum + next(worse), items

    monkeypatch.setattr(Trainer, "evaluate", evaluate_worse)
    out = str(tmp_path / "run")
    train.main(TINY + ["-e", "3", "-o", out, "--keep", "1"])
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:1] == ["epoch"])
    assert lines[header].endswith("model snapshot")
    rows = [line.split() for line in lines[header + 1 : header + 4]]
    assert [row[-1] for row in rows][0] == f"pixelcnn_{EPOCH}", rows
    assert [row[-1].endswith("s") for row in rows[1:]] == [True, True], rows  # the elapsed column is the last
    assert [r["model_snapshot"] for r in read_log(out)] == [f"pixelcnn_{EPOCH}", None, None]
    assert model_snapshots(out) == [f"pixelcnn_{EPOCH}"]  # the best, though not the last epoch


@pytest.mark.parametrize(
    "value, fragment",
    [("-1", "must be zero or a positive integer, got -1"), ("x", "must be zero or a positive integer, got 'x'")],
)
def test_a_bad_keep_is_one_line(value, fragment, tmp_path, capsys, monkeypatch):
    status = run_main("train.py", TINY + ["-o", str(tmp_path / "run"), "--keep", value], monkeypatch)
    assert_one_line_error(status, capsys.readouterr().err, fragment)
