"""Causality and receptive field of both models, proved with input gradients."""

import pytest
import torch
import torch.nn.functional as F

from wavenet import GatedPixelCNN, WaveNet, receptive_field


def pixelcnn_dependencies(model, C, H, W, batch=4):
    """Boolean (C, H, W, C, H, W): [c, i, j] -> which input sub-pixels the logits at (c, i, j) depend on."""
    torch.manual_seed(1)
    x = torch.rand(batch, C, H, W, dtype=torch.double, requires_grad=True)
    label = torch.arange(batch) % 3 if model.num_classes else None
    out = model(x, label)
    deps = torch.zeros(C, H, W, C, H, W, dtype=torch.bool)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                (g,) = torch.autograd.grad(out[:, :, c, i, j].sum(), x, retain_graph=True)
                deps[c, i, j] = (g != 0).any(0)  # a union over a batch of inputs: no dead-ReLU luck
    return deps


def raster_channel_order(C, H, W):
    """(C, H, W) position of each sub-pixel in generation order: raster over pixels, then channels."""
    return torch.arange(C * H * W).view(H, W, C).permute(2, 0, 1)


@pytest.mark.parametrize("channels", [1, 3])
def test_pixelcnn_sees_exactly_the_past(channels):
    # 2 blocks after the 7x7 one reach 3+2 = 5 pixels in every direction, which covers a 6x6 image:
    # then every earlier sub-pixel must matter (no blind spot) and no later one may.
    C, H, W = channels, 6, 6
    # a seed of its own: with 12 channels, 4 per colour, some seeds leave every blue unit of the output
    # layer a dead ReLU, and blue would then see no green by chance, not by the masks (seed 0 does)
    torch.manual_seed(3)
    model = GatedPixelCNN(C, 12, 2, 12, 4, num_classes=3).double()
    deps = pixelcnn_dependencies(model, C, H, W)
    order = raster_channel_order(C, H, W)
    for c in range(C):
        for i in range(H):
            for j in range(W):
                past = order < order[c, i, j]
                assert not (deps[c, i, j] & ~past).any(), f"logits at {(c, i, j)} see the future"
                assert deps[c, i, j][past].all(), f"logits at {(c, i, j)} miss part of the past"


def test_pixelcnn_receptive_field_is_bounded_by_kernel_sizes():
    # one 3x3 block after the 7x7 one: the vertical stack reaches 7//2 + 1 rows above its own row and
    # 7//2 + 1 columns to each side; shifted down once, it gives pixel (i, j) rows i-5..i-1
    blocks, H, W = 1, 12, 12
    model = GatedPixelCNN(1, 8, blocks, 8, 2, num_classes=0).double()
    deps = pixelcnn_dependencies(model, 1, H, W)
    reach = 7 // 2 + blocks
    i, j = 9, 6
    seen = deps[0, i, j, 0].nonzero()
    rows, cols = seen[:, 0], seen[:, 1]
    assert rows.min() == i - 1 - reach and rows.max() == i
    assert (cols[rows < i] - j).abs().max() == reach
    assert cols[rows == i].min() == j - reach and cols[rows == i].max() == j - 1


def test_pixelcnn_output_shape_and_label_check():
    model = GatedPixelCNN(3, 8, 1, 8, 5, num_classes=10)
    out = model(torch.rand(2, 3, 5, 7), torch.tensor([0, 9]))
    assert out.shape == (2, 5, 3, 5, 7)
    with pytest.raises(ValueError, match="out of range"):
        model(torch.rand(1, 3, 5, 7), torch.tensor([10]))


# kernel 1: every convolution is 1x1 and output t sees x[t-1] alone (receptive field 1)
@pytest.mark.parametrize("stacks, layers, kernel", [(1, 3, 2), (2, 3, 2), (1, 4, 3), (1, 2, 1)])
def test_wavenet_receptive_field_is_exact(stacks, layers, kernel):
    torch.manual_seed(0)
    levels = 8
    model = WaveNet(levels, 8, 8, stacks, layers, kernel_width=kernel, num_speakers=2).double()
    R = receptive_field(stacks, layers, kernel)
    assert model.receptive_field == R
    T = R + 12
    codes = torch.randint(0, levels, (3, T))
    x = F.one_hot(codes, levels).permute(0, 2, 1).double().requires_grad_()
    out = model(x, torch.tensor([0, 1, 1]))
    assert out.shape == (3, levels, T)
    for t in (0, 1, R // 2, R, T - 1):
        (g,) = torch.autograd.grad(out[:, :, t].sum(), x, retain_graph=True)
        seen = set((g != 0).any(0).any(0).nonzero().flatten().tolist())
        assert seen == set(range(max(0, t - R), t)), f"output {t} sees {sorted(seen)}"


def test_wavenet_receptive_field_formula():
    # the original's stacks * 2**layers is an approximation; 1 stack x 3 layers sees 9 samples, not 8
    assert receptive_field(1, 3) == 9
    assert receptive_field(5, 10) == 5 * 1023 + 2


def test_wavenet_codes_and_one_hot_agree_and_output_length_crops():
    torch.manual_seed(0)
    model = WaveNet(16, 8, 8, 2, 3, num_speakers=0).double()
    codes = torch.randint(0, 16, (2, 40))
    full = model(codes)
    one_hot = model(F.one_hot(codes, 16).permute(0, 2, 1).double())
    torch.testing.assert_close(full, one_hot)
    torch.testing.assert_close(model(codes, output_length=7), full[..., -7:])


def test_wavenet_speaker_conditioning_matters():
    torch.manual_seed(0)
    model = WaveNet(16, 8, 8, 1, 3, num_speakers=3)
    codes = torch.randint(0, 16, (1, 20))
    a, b = model(codes, torch.tensor([0])), model(codes, torch.tensor([2]))
    assert not torch.allclose(a, b)
    with pytest.raises(ValueError, match="out of range"):
        model(codes, torch.tensor([3]))
