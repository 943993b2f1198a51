"""Drawing images from a Gated PixelCNN, one sub-pixel at a time.

Sub-pixels are generated in raster order of pixels and, within a pixel, in
channel order (R -> G -> B), the order `GatedPixelCNN` is causal in. Two
algorithms are kept; for the same random numbers they draw the same images:

* "naive", the original's: one full forward pass over the whole image for every
  sub-pixel, so C*H*W passes of the whole network.
* "cached", after Ramachandran et al. 2017 ("Fast Generation for Convolutional
  Autoregressive Models"): every block keeps only the part of its inputs that
  its kernels still need. A finished row goes through the vertical stack once;
  a new sub-pixel goes through the horizontal stack at its own position only.
  It calls the model's own modules (`valid` convolutions, `link`,
  `horizontal_out`, `logits`), so it cannot drift from `forward`.

Both draw a sub-pixel by inverse-CDF sampling in float64 from one
`torch.rand(count)` per sub-pixel, in generation order.
"""
import contextlib
import itertools

import torch
import torch.nn.functional as F
from tqdm import tqdm

from .layers import gated_activation

METHODS = ("cached", "naive")


def sample_images(model, count, height, width, label=None, generator=None, method="cached",
                  progress=True, stop_after=None):
    """Draw `count` images from a GatedPixelCNN.

    label: (count,) long class ids, or None for an unconditional model;
    generator: the torch.Generator that drives the draws (the global one if None);
    method: "cached" (fast) or "naive" (the original's full pass per sub-pixel);
    progress: show a tqdm bar (rows for "cached", sub-pixels for "naive");
    stop_after: stop after this many sub-pixels, leaving the rest 0 (for benchmarks).

    Returns quantised values (count, C, height, width) long in 0..levels-1 on the
    model's device; value q stands for intensity q / (levels - 1). The model is
    run under no_grad in eval mode, and its training mode is restored.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    for name, value in (("count", count), ("height", height), ("width", width)):
        if value <= 0:
            raise ValueError(f"{name} must be a positive integer, got {value}")
    param = next(model.parameters())
    if label is not None:
        label = label.to(param.device)
    model.check_label(label, count)
    levels = model.levels
    x = torch.zeros(count, model.in_channels, height, width, dtype=param.dtype, device=param.device)
    samples = torch.zeros(x.shape, dtype=torch.long, device=param.device)

    def draw(logits, index):
        q = inverse_cdf_sample(logits, generator)  # (count,)
        samples[(slice(None),) + index] = q
        return q.to(x.dtype) / (levels - 1)

    loop = _cached_loop if method == "cached" else _naive_loop
    with _inference(model):
        loop(model, x, label, draw, progress, stop_after)
    return samples


def cached_logits(model, x, label=None):
    """Teacher-forced logits through the cached sampling path, for checking it against `forward`.

    x: (B, C, H, W) values q/(levels-1); label: (B,) long or None.
    Returns (B, levels, C, H, W), what `model(x, label)` returns. Each sub-pixel's
    logits come from the same step of the same loop that `sample_images` runs,
    with the pixel's later channels still 0 as they are while sampling.
    """
    B, C, H, W = x.shape
    model.check_label(label, B)
    out = x.new_empty(B, model.levels, C, H, W)
    image = torch.zeros_like(x)

    def teacher(logits, index):
        c, i, j = index
        out[:, :, c, i, j] = logits
        return x[:, c, i, j]

    with _inference(model):
        _cached_loop(model, image, label, teacher, progress=False, stop_after=None)
    return out


def inverse_cdf_sample(logits, generator=None):
    """Draw one level per row: logits (B, levels) -> (B,) long, from one torch.rand(B) in float64.

    float64 keeps the CDF's last entry at 1 up to rounding; the clamp covers a
    uniform draw above a last entry that rounded below it.
    """
    B, levels = logits.shape
    cdf = torch.softmax(logits.double(), dim=1).cumsum(dim=1)  # (B, levels)
    device = generator.device if generator is not None else logits.device
    u = torch.rand(B, generator=generator, dtype=torch.float64, device=device).to(logits.device)
    # the first level whose cumulative probability exceeds u
    return torch.searchsorted(cdf, u[:, None], right=True)[:, 0].clamp_(max=levels - 1)


@contextlib.contextmanager
def _inference(model):
    """no_grad and eval mode for the duration; the previous mode comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)


def _naive_loop(model, x, label, choose, progress, stop_after):
    """Fill x (B, C, H, W) in place: a full forward pass per sub-pixel (the original's algorithm).

    choose(logits (B, levels), (c, i, j)) returns the value written to x[:, c, i, j].
    """
    B, C, H, W = x.shape
    order = itertools.product(range(H), range(W), range(C))  # raster, then R -> G -> B
    total = C * H * W if stop_after is None else min(stop_after, C * H * W)
    for i, j, c in tqdm(itertools.islice(order, total), total=total, disable=not progress,
                        desc="sampling (naive)", unit="sub-pixel"):
        x[:, c, i, j] = choose(model(x, label)[:, :, c, i, j], (c, i, j))


def _cached_loop(model, x, label, choose, progress, stop_after):
    """Fill x (B, C, H, W) in place with the cached stacks; same contract as `_naive_loop`."""
    B, C, H, W = x.shape
    stacks = CachedStacks(model, label, B, W)
    steps = 0
    for i in tqdm(range(H), disable=not progress, desc="sampling (cached)", unit="row"):
        for j in range(W):
            for c in range(C):
                if steps == stop_after:
                    return
                # the pixel again for each channel: channel c's logits need channels < c
                logits = stacks.pixel(j, 2 * x[:, :, i, j] - 1)  # (B, levels, C)
                x[:, c, i, j] = choose(logits[:, :, c], (c, i, j))
                steps += 1
            stacks.finish_pixel(j, 2 * x[:, :, i, j] - 1)
        stacks.finish_row(2 * x[:, :, i] - 1)


class CachedStacks:
    """What each block of a GatedPixelCNN still needs of its inputs while rows are generated.

    Per block, with kernel size k and half = k // 2:

    * vertical window (B, C_in, half + 1, W + 2*half): the last half + 1 rows of the
      block's vertical input, zero padded left and right, zero rows before row 0:
      exactly the padding `VerticalConv.forward` applies, so `vertical.valid` of it
      is the pre-activation of the newest row.
    * horizontal row (B, C_in, 1, half + W): the block's horizontal input along the
      current row after `half` zero columns (`HorizontalConv.forward`'s padding);
      column j's window is the half + 1 columns ending at j.
    * link (B, 2*hidden, 1, W): `link` of the previous row's vertical pre-activation,
      which is what `shift_down` delivers to the current row in `forward`.

    Inputs are centred (2*x - 1) before they enter, and the zero padding is of the
    centred signal, as in `GatedPixelCNN.forward`.
    """

    def __init__(self, model, label, batch, width):
        param = next(model.parameters())
        like = dict(dtype=param.dtype, device=param.device)
        self.model = model
        self.conditions = [block.condition(label) for block in model.blocks]  # (cond_v, cond_h) each
        self.v_windows, self.h_rows, self.links = [], [], []
        for block in model.blocks:
            C_in, v_half, h_half = block.vertical.in_channels, block.vertical.half, block.horizontal.half
            self.v_windows.append(torch.zeros(batch, C_in, v_half + 1, width + 2 * v_half, **like))
            self.h_rows.append(torch.zeros(batch, C_in, 1, h_half + width, **like))
            # above row 0 shift_down supplies zeros
            self.links.append(block.link(torch.zeros(batch, block.link.in_channels, 1, width, **like)))

    def pixel(self, j, pixel):
        """Horizontal stack at column j of the current row: pixel (B, C) centred -> logits (B, levels, C)."""
        h = pixel[:, :, None, None]  # (B, C, 1, 1)
        for block, row, link, (_, cond_h) in zip(self.model.blocks, self.h_rows, self.links,
                                                 self.conditions):
            half = block.horizontal.half
            row[:, :, :, half + j:half + j + 1] = h
            h_pre = block.horizontal.valid(row[:, :, :, j:j + half + 1]) + link[:, :, :, j:j + 1]
            h = block.horizontal_out(h_pre, h, cond_h)  # (B, hidden, 1, 1)
        return self.model.logits(h)[:, :, :, 0, 0]

    def finish_pixel(self, j, pixel):
        """Store the finished pixel (B, C) centred at column j, for the pixels to its right.

        The last `pixel` call ran before the last channel was drawn. Only the first
        block's input lacks it: mask A keeps every hidden unit at (i, j) blind to
        the last channel, so the deeper blocks' stored inputs are already final.
        """
        half = self.model.blocks[0].horizontal.half
        self.h_rows[0][:, :, 0, half + j] = pixel

    def finish_row(self, row):
        """Vertical stack of a finished row: row (B, C, W) centred; prepares the next row's links."""
        v = row[:, :, None, :]  # (B, C, 1, W)
        for n, (block, window, (cond_v, _)) in enumerate(zip(self.model.blocks, self.v_windows,
                                                             self.conditions)):
            half = block.vertical.half
            window = torch.cat([window[:, :, 1:], F.pad(v, (half, half))], dim=2)  # drop the oldest row
            self.v_windows[n] = window
            v_pre = block.vertical.valid(window)  # (B, 2*hidden, 1, W)
            self.links[n] = block.link(v_pre)
            v = gated_activation(v_pre, cond_v)
