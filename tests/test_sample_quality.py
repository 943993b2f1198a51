"""bench/sample_quality.py on a tiny model of the 8x8 digits: it runs, prints its table, and its measure can fail.

The measure is the fraction of samples a classifier (fitted on the real digits at the model's levels)
assigns to the label they were drawn for. It must be high for samples that do show their label and
near chance (10%) for samples that ignore it, whether those are a real model's or real images.
"""

import json
import os
import re
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, TINY_PIXELCNN, assert_one_line_error, load_bench_script, read_log
from PIL import Image

from wavenet import checkpoint, cli, files
from wavenet.image_data import load_images
from wavenet.models import GatedPixelCNN

SCRIPT = os.path.join(ROOT, "bench", "sample_quality.py")
LEVELS = 4  # TINY_PIXELCNN's
CHANCE = 0.35  # "near chance" for 10 classes: a label-blind model's expected score is 0.10
HIGH = 0.90  # real digits at 4 levels: the classifier gets ~98% of the real test images right
PCT = r"\d+\.\d%"


quality = load_bench_script("sample_quality")


def run_script(argv):
    """quality.main(argv) under cli.run, as `python bench/sample_quality.py` runs it; its exit status."""
    try:
        cli.run(lambda: quality.main(argv))
    except SystemExit as e:
        return e.code
    return 0


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny Gated PixelCNN trained one epoch on the digits, the same model with its label embeddings zeroed
    (so it ignores the label), and a classifier cache fitted once for all tests. {name: path}."""
    import train

    tmp = tmp_path_factory.mktemp("quality")
    train.main(TINY_PIXELCNN + ["-b", "64", "-e", "1", "-o", str(tmp / "run")])
    trained = files.newest(str(tmp / "run"), "pixelcnn_")
    snapshot = checkpoint.load(trained)
    model = checkpoint.build_model(snapshot, "GatedPixelCNN")
    zeroed = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Embedding):  # label_v, label_h of every block: the label's only way in
                module.weight.zero_()
                zeroed += 1
    assert zeroed > 0
    blind = str(tmp / "blind_model")
    checkpoint.save(blind, checkpoint.model_snapshot(model, snapshot["meta"]))
    paths = {"tmp": str(tmp), "run": str(tmp / "run"), "trained": trained, "blind": blind}
    paths["cache"] = str(tmp / "classifier.pt")
    assert run_script(["-m", trained, "-k", "2", "--classifier_cache", paths["cache"]]) == 0  # fits and writes it
    assert os.path.isfile(paths["cache"])
    return paths


def results(tiny, name, argv):
    out = os.path.join(tiny["tmp"], name + ".json")
    assert run_script(argv + ["--classifier_cache", tiny["cache"], "--json", out]) == 0
    with open(out) as f:
        return json.load(f)


def test_label_blind_model_scores_near_chance(tiny, capsys):
    r = results(tiny, "blind", ["-m", tiny["blind"], "-k", "10", "--seed", "3"])
    assert [row["label"] for row in r["labels"]] == list(range(10))
    assert all(row["samples"] == 10 for row in r["labels"])
    assert r["overall"]["samples"] == 100
    assert r["overall"]["classified_as_label"] == sum(row["classified_as_label"] for row in r["labels"])
    # the classifier itself reads the real quantised test digits: the measure can pass...
    assert r["classifier"]["test_accuracy"] >= HIGH
    # ...and this model, which cannot see its label, fails it
    assert r["overall"]["fraction"] < CHANCE, r["labels"]
    assert r["target_met"] is None  # the target is MNIST's: the digits are not judged
    lines = capsys.readouterr().out.splitlines()
    for label in range(10):
        assert any(re.fullmatch(rf"{label} +10 +\d+ \({PCT}\) +{PCT}", line) for line in lines), lines
    assert any(re.fullmatch(rf"overall +100 +\d+ \({PCT}\) +{PCT}", line) for line in lines), lines
    assert lines[-2:] == [
        "target (>= 90% overall, every label >= 75%): applies to MNIST models only, not judged for digits",
        f"wrote {os.path.join(tiny['tmp'], 'blind.json')}",
    ]


def test_bits_per_dim_is_the_trainers(tiny):
    grid = os.path.join(tiny["tmp"], "grid.png")
    r = results(tiny, "trained", ["-m", tiny["run"], "-k", "2", "-o", grid])  # a run folder: its newest snapshot
    assert r["snapshot"] == tiny["trained"]
    with Image.open(grid) as picture:  # 8x8 tiles enlarged to 32x32, 2 pixels apart: a row of 2 per label
        assert picture.size == (2 * 34 + 2, 10 * 34 + 2)
    assert r["bits_per_dim_images"] == 359  # the digits' test split
    assert r["test_bits_per_dim"] == pytest.approx(read_log(tiny["run"])[-1]["val_bits_per_dim"], rel=1e-4)


def real_digits_sampler(match_label):
    """A stand-in for sample_images that returns real quantised test digits: of the label asked for if
    match_label, else of random labels (a perfect draftsman that ignores its label)."""
    q, labels = load_images("digits", None, False, LEVELS).tensors
    generator = torch.Generator().manual_seed(0)

    def sample(model, count, height, width, label=None, generator_=None, **_):
        wanted = label.cpu() if match_label else torch.randint(0, 10, (count,), generator=generator)
        picks = [torch.nonzero(labels == y).flatten() for y in range(10)]
        chosen = torch.stack([picks[y][i % len(picks[y])] for i, y in enumerate(wanted.tolist())])
        return q[chosen].long()

    return sample


@pytest.mark.parametrize("match_label", [True, False])
def test_measure_on_real_digits(tiny, monkeypatch, match_label):
    monkeypatch.setattr(quality, "sample_images", real_digits_sampler(match_label))
    r = results(tiny, f"real_{match_label}", ["-m", tiny["trained"], "-k", "20"])
    if match_label:  # the samples show their label: high, label by label
        assert r["overall"]["fraction"] >= HIGH
        assert min(row["fraction"] for row in r["labels"]) >= 0.75, r["labels"]
    else:  # the same real digits, drawn blind to the label asked for
        assert r["overall"]["fraction"] < CHANCE
    assert r["target_met"] is None  # either way: MNIST's target is not the digits'


@pytest.fixture(scope="module")
def as_mnist(tiny):
    """The trained digits model relabelled as an MNIST one (its snapshot's path)."""
    path = os.path.join(tiny["tmp"], "as_mnist")
    snapshot = checkpoint.load(tiny["trained"])
    model = checkpoint.build_model(snapshot, "GatedPixelCNN")
    checkpoint.save(path, checkpoint.model_snapshot(model, {**snapshot["meta"], "dataset": "mnist"}))
    return path


@pytest.mark.parametrize("match_label", [True, False])
def test_the_target_is_judged_for_mnist_snapshots(tiny, as_mnist, monkeypatch, capsys, match_label):
    # judged on the digits (no MNIST download) by a classifier of its own: the same measure as above,
    # now with the target's verdict
    monkeypatch.setattr(quality, "load_images", lambda dataset, *rest: load_images("digits", *rest))
    monkeypatch.setattr(quality, "sample_images", real_digits_sampler(match_label))
    out = os.path.join(tiny["tmp"], f"mnist_{match_label}.json")
    cache = os.path.join(tiny["tmp"], "mnist_classifier.pt")  # fitted by the first run, read by the second
    assert run_script(["-m", as_mnist, "-k", "20", "--classifier_cache", cache, "--json", out]) == 0
    with open(out) as f:
        r = json.load(f)
    assert r["dataset"] == "mnist"
    assert r["target_met"] is match_label
    verdict = "met" if match_label else "NOT met"
    assert f"target (>= 90% overall, every label >= 75%): {verdict}" in capsys.readouterr().out.splitlines()


def test_unwritable_outputs_are_refused_before_the_work(tiny, monkeypatch, capsys):
    """A --json, -o or --classifier_cache that cannot be written is refused before the data are loaded,
    the classifier fitted or a sample drawn (minutes on MNIST), as one line."""
    work = []
    monkeypatch.setattr(quality, "load_images", lambda *a, **k: work.append("load_images"))
    monkeypatch.setattr(quality, "sample_images", lambda *a, **k: work.append("sample_images"))
    missing = os.path.join(tiny["tmp"], "no_such_folder")
    cases = [
        (
            ["--json", os.path.join(missing, "r.json")],
            f"--json '{missing}/r.json': '{missing}' is not an existing folder",
        ),
        (["--json", tiny["tmp"]], f"--json '{tiny['tmp']}' is a folder; pass a file name such as"),
        (["-o", os.path.join(missing, "g.png")], f"--output '{missing}/g.png': '{missing}' is not an existing folder"),
        (
            ["--classifier_cache", os.path.join(missing, "c.pt")],
            f"--classifier_cache '{missing}/c.pt': '{missing}' is not an existing folder",
        ),
        (["--classifier_cache", tiny["tmp"]], f"--classifier_cache '{tiny['tmp']}' is a folder; pass a file name"),
    ]
    for argv, fragment in cases:
        assert_one_line_error(run_script(["-m", tiny["trained"], "-k", "1", *argv]), capsys.readouterr().err, fragment)
    assert work == [] and not os.path.exists(missing)


@pytest.mark.slow  # a subprocess of its own: out of CI for time (run with -m slow)
def test_script_runs_as_a_user_runs_it(tiny):
    result = subprocess.run(
        [sys.executable, SCRIPT, "-m", tiny["trained"], "-k", "1", "--classifier_cache", tiny["cache"]],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^test bits/dim: \d+\.\d{4} \(359 real test images\)$", result.stdout, re.M), result.stdout
    assert re.search(rf"^classifier: {PCT} of 359 real test images right", result.stdout, re.M), result.stdout
    assert re.search(rf"^overall +10 +\d+ \({PCT}\) +{PCT}$", result.stdout, re.M), result.stdout


def test_user_mistakes_are_one_line_errors(tiny, capsys):
    unconditional = GatedPixelCNN(3, 8, 1, 8, LEVELS, num_classes=0)
    meta = {"dataset": "digits", "levels": LEVELS, "height": 8, "width": 8}
    path = os.path.join(tiny["tmp"], "unconditional")
    checkpoint.save(path, checkpoint.model_snapshot(unconditional, meta))
    assert_one_line_error(run_script(["-m", path]), capsys.readouterr().err, "unconditional model")

    other_levels = GatedPixelCNN(3, 8, 1, 8, 2)
    path = os.path.join(tiny["tmp"], "two_levels")
    checkpoint.save(path, checkpoint.model_snapshot(other_levels, {**meta, "levels": 2}))
    status = run_script(["-m", path, "-k", "1", "--classifier_cache", tiny["cache"]])
    assert_one_line_error(status, capsys.readouterr().err, "holds the classifier of digits at 4 levels")

    cifar = os.path.join(tiny["tmp"], "cifar")
    checkpoint.save(cifar, checkpoint.model_snapshot(other_levels, {**meta, "dataset": "cifar"}))
    assert_one_line_error(run_script(["-m", cifar]), capsys.readouterr().err, "digit classes only")

    garbage = os.path.join(tiny["tmp"], "garbage.pt")
    with open(garbage, "w") as f:
        f.write("not a classifier")
    status = run_script(["-m", tiny["trained"], "--classifier_cache", garbage])
    assert_one_line_error(status, capsys.readouterr().err, "is not a classifier file")
