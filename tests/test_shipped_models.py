"""The trained snapshots in assets/models/ (issue 14): each loads safely and checksummed, samples, and was
trained as the README says.

The README's "Shipped models" table names each file beside the train.py command that made it; that
command is parsed with train.py's own parser and compared with the config and meta the snapshot
stores, so the README cannot drift from the files.
"""

import hashlib
import os
import re
import shlex

import pytest
import torch

import demo
import train
from wavenet import checkpoint
from wavenet.pixelcnn_sampling import sample_images

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODELS = os.path.join(ROOT, "assets", "models")
SHIPPED = sorted(name for name in os.listdir(MODELS) if name.endswith(".pt"))
MAX_BYTES = 5 * 2**20  # the "under about 5 MB" each, so a clone stays small


def readme_rows():
    """{file name: the train.py command} from the README's table rows that name a file in assets/models/."""
    rows = {}
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        for line in f:
            found = re.match(r"\|\s*\[?`?assets/models/([\w.-]+\.pt)", line)
            command = re.search(r"`(python train\.py [^`]+)`", line)
            if found and command:
                rows[found.group(1)] = command.group(1)
    return rows


def sha256sums():
    """{file name: hex digest} from assets/models/SHA256SUMS (the format `sha256sum -c` reads)."""
    with open(os.path.join(MODELS, "SHA256SUMS")) as f:
        return {name.lstrip("*"): digest for digest, name in (line.split() for line in f if line.strip())}


def test_every_shipped_file_is_listed_with_its_checksum_and_its_command():
    assert SHIPPED, "assets/models/ holds no snapshot"
    assert sorted(sha256sums()) == SHIPPED
    assert sorted(readme_rows()) == SHIPPED


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_snapshot_is_small_and_matches_its_checksum(name):
    path = os.path.join(MODELS, name)
    assert os.path.getsize(path) < MAX_BYTES
    with open(path, "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == sha256sums()[name]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_snapshot_was_trained_as_the_readme_says(name):
    snapshot = checkpoint.load(os.path.join(MODELS, name))  # weights_only, tensor checksum verified
    assert set(checkpoint.CHECKSUMS) <= set(snapshot)  # of the weights, and of the weights, config and meta
    assert "optimizer" not in snapshot  # a model snapshot, not a trainer one
    args = train.parse_args(shlex.split(readme_rows()[name])[2:])
    config, meta = snapshot["config"], snapshot["meta"]
    stated = {"hidden_dim": args.hidden_dim, "blocks_num": args.blocks_num, "out_hidden_dim": args.out_hidden_dim}
    assert {key: config[key] for key in stated} == stated
    assert config["levels"] == meta["levels"] == args.levels
    assert meta["dataset"] == args.dataset


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_snapshot_samples_a_grid_from_a_fixed_seed(name):
    snapshot = checkpoint.load(os.path.join(MODELS, name))
    model = checkpoint.build_model(snapshot, "GatedPixelCNN", name)
    height, width = snapshot["meta"]["height"], snapshot["meta"]["width"]
    labels = torch.arange(model.num_classes)

    def grid():
        generator = torch.Generator().manual_seed(0)
        return sample_images(model, len(labels), height, width, labels, generator, progress=False)

    images = grid()
    assert images.shape == (len(labels), model.in_channels, height, width)
    assert images.min() >= 0 and images.max() < model.levels
    assert images.float().std() > 0  # not a blank grid
    assert torch.equal(images, grid())


def test_the_demo_samples_a_shipped_mnist_model():
    """demo.py draws a grid from a shipped MNIST snapshot after training its own digits model."""
    assert os.path.dirname(demo.SHIPPED_MNIST) == MODELS
    name = os.path.basename(demo.SHIPPED_MNIST)
    assert name in SHIPPED
    assert checkpoint.load(demo.SHIPPED_MNIST)["meta"]["dataset"] == "mnist"
