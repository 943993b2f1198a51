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

Both draw a sub-pixel by `sampling.inverse_cdf_sample`, in float64 from one
`torch.rand(count)` per sub-pixel, in generation order. Their logits agree to
rounding (the convolutions are summed in a different order), so in float32 a
uniform draw within about 1e-7 of a CDF step can, rarely, fall on different
sides on the two paths; in float64 the draws are identical in practice.
"""

import itertools

import torch
import torch.nn.functional as F

from .layers import gated_activation
from .report import bar
from .sampling import inference, inverse_cdf_sample

METHODS = ("cached", "naive")


def sample_images(
    model, count, height, width, label=None, generator=None, method="cached", progress=True, stop_after=None
):
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
    if stop_after is not None and stop_after < 0:
        raise ValueError(f"stop_after must be None or >= 0, got {stop_after}")
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
    with inference(model):
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

    with inference(model):
        _cached_loop(model, image, label, teacher, progress=False, stop_after=None)
    return out


def _naive_loop(model, x, label, choose, progress, stop_after):
    """Fill x (B, C, H, W) in place: a full forward pass per sub-pixel (the original's algorithm).

    choose(logits (B, levels), (c, i, j)) returns the value written to x[:, c, i, j].
    """
    B, C, H, W = x.shape
    order = itertools.product(range(H), range(W), range(C))  # raster, then R -> G -> B
    total = C * H * W if stop_after is None else min(stop_after, C * H * W)
    for i, j, c in bar(
        itertools.islice(order, total), total=total, disable=not progress, desc="sampling (naive)", unit="sub-pixel"
    ):
        x[:, c, i, j] = choose(model(x, label)[:, :, c, i, j], (c, i, j))


def _cached_loop(model, x, label, choose, progress, stop_after):
    """Fill x (B, C, H, W) in place with the cached stacks; same contract as `_naive_loop`."""
    B, C, H, W = x.shape
    stacks = CachedStacks(model, label, B, W)
    steps = 0
    for i in bar(range(H), disable=not progress, desc="sampling (cached)", unit="row"):
        for j in range(W):
            for c in range(C):
                if steps == stop_after:
                    return
                # the pixel again for each channel: channel c's logits need channels < c
                logits = stacks.pixel(j, model.centre(x[:, :, i, j]))  # (B, levels, C)
                x[:, c, i, j] = choose(logits[:, :, c], (c, i, j))
                steps += 1
            stacks.finish_pixel(j, model.centre(x[:, :, i, j]))
        stacks.finish_row(model.centre(x[:, :, i]))


class CachedStacks:
    """What each block of a GatedPixelCNN still needs of its inputs while rows are generated.

    Per block, with kernel size k and half = k // 2:

    * vertical window (B, C_in, half + 1, W + 2*half): the last half + 1 rows of the
      block's vertical input, zero padded left and right, zero rows before row 0:
      exactly the padding `VerticalConv.forward` applies, so `vertical.valid` of it
      is the pre-activation of the newest row.
    * horizontal row (half + W, 1, C_in, B): the block's horizontal input along the
      current row after `half` zero columns (`HorizontalConv.forward`'s padding),
      column by column; column j's window is the half + 1 columns ending at j.
    * link (W, 1, 2*hidden, B, 1): `link` of the previous row's vertical
      pre-activation, which is what `shift_down` delivers to the current row in
      `forward`; one contiguous (1, 2*hidden, B, 1) slab per column.

    The horizontal stack runs with the batch laid along the row axis, (1, C, B, W)
    instead of (B, C, 1, W): its kernels are one row high, so rows never mix and
    the arithmetic is unchanged, but each per-pixel convolution becomes one
    convolution over B positions, which oneDNN runs several times faster on the
    CPU than B images of one position. `pixel` converts at its entry and exit.

    Inputs are centred (`GatedPixelCNN.centre`) before they enter, and the zero padding is of the
    centred signal, as in `GatedPixelCNN.forward`.
    """

    def __init__(self, model, label, batch, width):
        param = next(model.parameters())
        like = dict(dtype=param.dtype, device=param.device)
        self.model = model
        self.v_conditions, self.h_conditions = [], []
        self.v_windows, self.h_rows, self.links = [], [], []
        for block in model.blocks:
            cond_v, cond_h = block.condition(label)  # (B, 2*hidden, 1, 1) each, or None
            self.v_conditions.append(cond_v)
            self.h_conditions.append(None if cond_h is None else to_rows(cond_h))
            C_in, v_half, h_half = block.vertical.in_channels, block.vertical.half, block.horizontal.half
            self.v_windows.append(torch.zeros(batch, C_in, v_half + 1, width + 2 * v_half, **like))
            self.h_rows.append(torch.zeros(h_half + width, 1, C_in, batch, **like))
            # above row 0 shift_down supplies zeros
            zeros = torch.zeros(1, block.link.in_channels, batch, width, **like)
            self.links.append(by_column(block.link(zeros)))

    def pixel(self, j, pixel):
        """Horizontal stack at column j of the current row: pixel (B, C) centred -> logits (B, levels, C)."""
        h = pixel.t()[None, :, :, None]  # (1, C, B, 1)
        for block, row, link, cond_h in zip(self.model.blocks, self.h_rows, self.links, self.h_conditions):
            half = block.horizontal.half
            row[half + j] = h[..., 0]
            window = row[j : j + half + 1].permute(1, 2, 3, 0)  # (1, C_in, B, half + 1)
            h_pre = block.horizontal.valid(window) + link[j]
            h = block.horizontal_out(h_pre, h, cond_h)  # (1, hidden, B, 1)
        return self.model.logits(h)[0, :, :, :, 0].permute(2, 0, 1)  # (levels, C, B) -> (B, levels, C)

    def finish_pixel(self, j, pixel):
        """Store the finished pixel (B, C) centred at column j, for the pixels to its right.

        The last `pixel` call ran before the last channel was drawn. Only the first
        block's input lacks it: mask A keeps every hidden unit at (i, j) blind to
        the last channel, so the deeper blocks' stored inputs are already final.
        """
        half = self.model.blocks[0].horizontal.half
        self.h_rows[0][half + j, 0] = pixel.t()

    def finish_row(self, row):
        """Vertical stack of a finished row: row (B, C, W) centred; prepares the next row's links."""
        v = row[:, :, None, :]  # (B, C, 1, W)
        for n, (block, window, cond_v) in enumerate(zip(self.model.blocks, self.v_windows, self.v_conditions)):
            half = block.vertical.half
            window = torch.cat([window[:, :, 1:], F.pad(v, (half, half))], dim=2)  # drop the oldest row
            self.v_windows[n] = window
            v_pre = block.vertical.valid(window)  # (B, 2*hidden, 1, W)
            self.links[n] = by_column(block.link(to_rows(v_pre)))
            v = gated_activation(v_pre, cond_v)


def to_rows(t):
    """(B, C, 1, W) -> (1, C, B, W): one row per image, the horizontal stack's layout in CachedStacks."""
    return t.permute(2, 1, 0, 3)


def by_column(t):
    """(1, C, B, W) -> (W, 1, C, B, 1), contiguous: what column j needs in one block of memory."""
    return t.permute(3, 0, 1, 2)[..., None].contiguous()
