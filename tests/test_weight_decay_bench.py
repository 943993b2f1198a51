"""bench/weight_decay.py: the L2 term beside the mean loss gradient, per kind of weight, on a tiny digits model."""

import os
import re
import subprocess
import sys

import pytest
import torch
from helpers import ROOT, load_bench_script

from wavenet import checkpoint
from wavenet.image_data import load_images
from wavenet.models import GatedPixelCNN

SCRIPT = os.path.join(ROOT, "bench", "weight_decay.py")
LEVELS = 4


bench = load_bench_script("weight_decay")


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return GatedPixelCNN(3, 8, 1, 8, LEVELS)


@pytest.fixture(scope="module")
def digits():
    return load_images("digits", None, True, LEVELS)


def test_script_prints_every_kind_of_weight(tmp_path):
    path = tmp_path / "pixelcnn_1"
    meta = {"dataset": "digits", "levels": LEVELS, "height": 8, "width": 8}
    checkpoint.save(str(path), checkpoint.model_snapshot(tiny_model(), meta))
    result = subprocess.run(
        [sys.executable, SCRIPT, "-m", str(path), "--batches", "2", "-b", "8"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    kinds = {bench.weight_kind(name) for name, _ in tiny_model().named_parameters()}
    number = r"\d\.\d\de[-+]\d\d"
    for kind in kinds:
        assert re.search(rf"^{re.escape(kind)} +\d+ +{number} +{number} +\d+\.\d\d$", result.stdout, re.M), kind
    assert "block label_h.weight" in kinds and "head out.weight" in kinds


def test_the_l2_term_is_weight_decay_times_the_weights(digits):
    model = tiny_model()
    gradients = bench.mean_loss_gradients(model, digits, batches=2, batchsize=8, seed=0)
    small, large, none = (bench.decay_table(model, gradients, wd) for wd in (1e-4, 1e-2, 0.0))
    for (kind, _, g1, d1, r1), (_, _, g2, d2, r2), (_, _, _, d0, r0) in zip(small, large, none):
        assert g1 == g2 > 0, kind  # the gradient does not depend on the factor compared
        assert d2 == pytest.approx(100 * d1) and r2 == pytest.approx(100 * r1), kind
        assert d0 == r0 == 0, kind
    weights = [p for name, p in model.named_parameters() if bench.weight_kind(name) == "block label_h.weight"]
    expected = 1e-4 * torch.cat([p.detach().flatten() for p in weights]).norm().item()
    assert {row[0]: row[3] for row in small}["block label_h.weight"] == pytest.approx(expected)


def test_the_gradient_is_the_trainers_loss_per_sub_pixel(digits):
    """One batch: the mean gradient is that of nll summed over the batch / (images * C*H*W), as Trainer.step."""
    model = tiny_model()
    generator = torch.Generator().manual_seed(3)
    pick = torch.randint(0, len(digits), (8,), generator=generator)
    q, labels = digits.tensors[0][pick].long(), digits.tensors[1][pick]
    logits = model(q.float() / (LEVELS - 1), labels)
    torch.nn.functional.cross_entropy(logits, q, reduction="sum").div(8 * 3 * 8 * 8).backward()
    expected = {name: p.grad.clone() for name, p in model.named_parameters()}
    got = bench.mean_loss_gradients(model, digits, batches=1, batchsize=8, seed=3)
    for name, g in expected.items():
        assert torch.allclose(got[name], g, atol=1e-7), name
