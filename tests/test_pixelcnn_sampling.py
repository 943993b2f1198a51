"""Cached PixelCNN sampling against the full forward pass and the original's naive loop."""

import pytest
import torch

from wavenet.models import GatedPixelCNN
from wavenet.pixelcnn_sampling import cached_logits, sample_images
from wavenet.sampling import inverse_cdf_sample

LEVELS = 5


def tiny_model(in_channels, num_classes, seed=0):
    """A float64 model small enough for CPU tests; float64 makes the cached path's rounding negligible."""
    torch.manual_seed(seed)
    model = GatedPixelCNN(
        in_channels, hidden_dim=6, blocks_num=2, out_hidden_dim=6, levels=LEVELS, num_classes=num_classes
    ).double()
    # non-zero biases and embeddings everywhere, so a missed bias or condition term shows up
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def random_image(batch, in_channels, height, width):
    return torch.randint(0, LEVELS, (batch, in_channels, height, width)).double() / (LEVELS - 1)


def labels_for(model, batch):
    return torch.arange(batch) % model.num_classes if model.num_classes else None


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("num_classes", [0, 4])
@pytest.mark.parametrize("size", [(5, 7), (9, 3)])  # non-square, taller than the 7x7 first kernel
def test_cached_logits_match_forward(in_channels, num_classes, size):
    model = tiny_model(in_channels, num_classes)
    x = random_image(3, in_channels, *size)
    label = labels_for(model, 3)
    expected = model(x, label)
    got = cached_logits(model, x, label)
    assert got.shape == expected.shape == (3, LEVELS, in_channels, *size)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0)


def test_cached_logits_see_the_condition():
    """The equivalence above is not vacuous: a different label changes the cached logits."""
    model = tiny_model(3, 4)
    x = random_image(2, 3, 4, 4)
    a = cached_logits(model, x, torch.tensor([0, 1]))
    b = cached_logits(model, x, torch.tensor([2, 3]))
    assert (a - b).abs().max() > 1e-3


@pytest.mark.parametrize("in_channels,num_classes", [(1, 0), (3, 4)])
def test_cached_and_naive_sampling_agree(in_channels, num_classes):
    model = tiny_model(in_channels, num_classes)
    label = labels_for(model, 4)
    draws = [
        sample_images(model, 4, 6, 5, label, torch.Generator().manual_seed(7), method=method, progress=False)
        for method in ("cached", "naive")
    ]
    assert torch.equal(draws[0], draws[1])
    # and the draws are not all alike, so the comparison has something to compare
    assert len(draws[0].unique()) > 1


def test_same_seed_same_samples_other_seed_other_samples():
    model = tiny_model(3, 0)
    a, b, c = (
        sample_images(model, 3, 4, 4, generator=torch.Generator().manual_seed(s), progress=False) for s in (1, 1, 2)
    )
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("method", ["cached", "naive"])
def test_samples_shape_dtype_and_range(method):
    model = tiny_model(3, 4)
    samples = sample_images(
        model, 2, 3, 8, torch.tensor([1, 2]), torch.Generator().manual_seed(0), method=method, progress=False
    )
    assert samples.shape == (2, 3, 3, 8)
    assert samples.dtype == torch.long
    assert samples.min() >= 0 and samples.max() <= LEVELS - 1


def test_stop_after_leaves_later_subpixels_zero_and_matches_full_run():
    model = tiny_model(3, 0)
    full = sample_images(model, 2, 3, 3, generator=torch.Generator().manual_seed(3), progress=False)
    part = sample_images(model, 2, 3, 3, generator=torch.Generator().manual_seed(3), progress=False, stop_after=5)
    order = full.permute(0, 2, 3, 1).reshape(2, -1)  # raster order, then channels
    part_order = part.permute(0, 2, 3, 1).reshape(2, -1)
    assert torch.equal(part_order[:, :5], order[:, :5])
    assert (part_order[:, 5:] == 0).all()


@pytest.mark.parametrize("training", [True, False])
def test_training_mode_is_restored(training):
    model = tiny_model(1, 0)
    model.train(training)
    sample_images(model, 1, 2, 2, progress=False)
    cached_logits(model, random_image(1, 1, 2, 2))
    assert model.training is training


def test_samples_carry_no_graph():
    model = tiny_model(1, 0)
    assert not sample_images(model, 1, 2, 2, progress=False).requires_grad
    assert not cached_logits(model, random_image(1, 1, 2, 2)).requires_grad


def test_inverse_cdf_follows_the_probabilities():
    # level 2 with probability 0.75, level 0 with 0.25, level 1 never
    logits = torch.log(torch.tensor([[0.25, 0.0, 0.75]])).expand(20000, 3)
    draws = inverse_cdf_sample(logits, torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=3).double() / len(draws)
    assert counts[1] == 0
    assert abs(counts[2].item() - 0.75) < 0.02


def test_bad_arguments_raise():
    model = tiny_model(1, 4)
    with pytest.raises(ValueError, match="method"):
        sample_images(model, 1, 2, 2, torch.tensor([0]), method="fast", progress=False)
    with pytest.raises(ValueError, match="label"):
        sample_images(model, 2, 2, 2, torch.tensor([0]), progress=False)
    with pytest.raises(ValueError, match="height"):
        sample_images(model, 1, 0, 2, torch.tensor([0]), progress=False)
    with pytest.raises(ValueError, match="stop_after"):
        sample_images(model, 1, 2, 2, torch.tensor([0]), progress=False, stop_after=-1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cached_logits_on_cuda():
    model = tiny_model(3, 4).cuda()
    x = random_image(2, 3, 4, 5).cuda()
    label = torch.tensor([0, 3]).cuda()
    assert torch.allclose(cached_logits(model, x, label), model(x, label), atol=1e-5, rtol=0)
    samples = sample_images(model, 2, 4, 5, label, torch.Generator("cuda").manual_seed(0), progress=False)
    assert samples.device.type == "cuda"
