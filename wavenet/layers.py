"""Causal building blocks shared by Gated PixelCNN and WaveNet.

The 2-D convolutions have a `forward` that pads so the output keeps the
input's size (training, teacher forcing) and a `valid` method that convolves an
already-gathered window without padding (cached sampling). Both apply the same
weights, so sampling cannot drift from training. WaveNet's `CausalConv1d`
never pads: `causal_inputs` prepends silence once, at the model's input, and
drops the sample each output predicts.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F


def gated_activation(h, condition=None):
    """tanh(filter) * sigmoid(gate), eq. (2) of the Gated PixelCNN paper.

    h: (B, 2*C, ...) pre-activations, filter half first; condition: a term
    broadcastable to h (class or speaker embedding) added to both halves.
    Returns (B, C, ...).
    """
    if condition is not None:
        h = h + condition
    a, b = h.chunk(2, dim=1)  # filter, gate: (B, C, ...) each
    return torch.tanh(a) * torch.sigmoid(b)


def channel_groups(n, groups, gated=False):
    """Colour group of each of `n` channels: channel c belongs to group c % groups.

    With `gated`, the n channels are a filter half and a gate half that
    `gated_activation` multiplies pairwise, so both halves get the same groups.
    """
    if gated:
        return channel_groups(n // 2, groups).repeat(2)
    return torch.arange(n) % groups


def center_tap_mask(out_groups, in_groups, mask_type):
    """(C_out, C_in) mask for the tap at the current pixel.

    Sub-pixels are generated in channel order (R -> G -> B). Mask 'A' lets an
    output of group g see only inputs of groups < g (the first layer must not see
    the sub-pixel it predicts); mask 'B' also allows group g itself.
    """
    out_g = out_groups[:, None]
    in_g = in_groups[None, :]
    allowed = in_g < out_g if mask_type == "A" else in_g <= out_g
    return allowed.float()


class VerticalConv(nn.Conv2d):
    """The vertical stack's convolution: a (k//2 + 1) x k kernel over the rows at and above.

    Output row i sees input rows i - k//2 .. i (all columns within k//2). It
    includes row i itself, so the stack's output may only reach the horizontal
    stack through `shift_down`. No tap of the kernel is ever zero.
    """

    def __init__(self, in_channels, out_channels, kernel_size):
        super().__init__(in_channels, out_channels, (kernel_size // 2 + 1, kernel_size))
        self.half = kernel_size // 2

    def forward(self, x):
        # pad left/right by k//2 and only above: the kernel's last row sits on row i
        return self.valid(F.pad(x, (self.half, self.half, self.half, 0)))

    def valid(self, window):
        """Convolve without padding: (B, C, k//2 + 1 + r, W + 2*(k//2)) -> (B, C_out, 1 + r, W)."""
        return super().forward(window)


class HorizontalConv(nn.Conv2d):
    """The horizontal stack's convolution: a 1 x (k//2 + 1) kernel over the current row.

    Output (i, j) sees columns j - k//2 .. j of row i. Every tap left of j is
    free; the tap at j itself is masked by colour group (`center_tap_mask`), so a
    1x1 `HorizontalConv` is the masked 1x1 convolution of the paper.
    """

    def __init__(self, in_channels, out_channels, kernel_size, mask_type, in_groups, out_groups):
        super().__init__(in_channels, out_channels, (1, kernel_size // 2 + 1))
        self.half = kernel_size // 2
        mask = torch.ones_like(self.weight)
        mask[:, :, 0, -1] = center_tap_mask(out_groups, in_groups, mask_type)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, x):
        # pad only on the left: the kernel's last column sits on column j
        return self.valid(F.pad(x, (self.half, 0, 0, 0)))

    def valid(self, window):
        """Convolve without padding: (B, C, R, k//2 + 1 + w) -> (B, C_out, R, 1 + w)."""
        return F.conv2d(window, self.weight * self.mask, self.bias)


def shift_down(x):
    """Move every row one step down, filling row 0 with zeros: (B, C, H, W) -> (B, C, H, W).

    Applied exactly once, where the vertical stack feeds the horizontal stack, so
    that pixel (i, j) receives only rows < i from above.
    """
    return F.pad(x, (0, 0, 1, 0))[:, :, :-1]


class CausalConv1d(nn.Conv1d):
    """A dilated convolution without padding: output n sees inputs n .. n + reach.

    Aligning each output with the *last* input of its window makes it causal; a
    caller trims anything added to the output (a residual) to its last steps.
    """

    def __init__(self, in_channels, out_channels, kernel_size, dilation=1):
        super().__init__(in_channels, out_channels, kernel_size, dilation=dilation)
        self.reach = (kernel_size - 1) * dilation  # how many past steps one output looks back


def causal_inputs(x, receptive_field, output_length, fill):
    """What the last `output_length` outputs of a causal sequence model over x may see.

    The causality rule: output t sees x[t-R .. t-1] (R = receptive_field), `fill`
    before x[0], and never x[t] or later. Together the outputs t = T-N .. T-1
    (N = output_length) see x[T-N-R .. T-2], which is what this returns, with
    `fill` at the negative indices. Valid convolutions that reach R - 1 steps back
    in all turn it into exactly N outputs, output t last in its window.

    x: codes long (B, T), or their one-hot float (B, levels, T); fill: the code
    assumed before x[0] (its one-hot vector for one-hot x); 0 <= N <= T.
    Returns codes (B, N + R - 1), or one-hot (B, levels, N + R - 1).
    """
    R, N, T = receptive_field, output_length, x.shape[-1]
    if not 0 <= N <= T:
        raise ValueError(f"output_length must lie in 0..{T} (the input's length), got {N}")
    if x.dtype.is_floating_point:
        B, levels, _ = x.shape
        pad = F.one_hot(torch.tensor(fill), levels).to(x)  # (levels,)
        padded = torch.cat([pad[None, :, None].expand(B, -1, R), x], dim=-1)  # (B, levels, R + T)
    else:
        padded = F.pad(x, (R, 0), value=fill)  # (B, R + T)
    # x[i] is padded[i + R]. Positive bounds: x[..., -0:] would keep everything when a length is 0
    return padded[..., T - N : T + R - 1]


class FrameUpsampler(nn.Module):
    """Local conditioning's upsampling (WaveNet section 2.5): frame-rate terms -> one term per sample.

    Frame f describes the audio around sample f*hop (a log-mel frame centred there). Sample t,
    between frames f = t // hop and f + 1, gets  k[r + hop] * y[f] + k[r] * y[f + 1]  with r = t - f*hop:
    a transposed convolution with stride hop and one learned kernel k of 2*hop taps shared by every
    channel, initialised to linear interpolation (the "learned upsampling" of the WaveNet paper and
    r9y9's upsample_net, which also share one kernel across bands). Shared by every channel, it
    commutes with a 1x1 projection, so each layer's projection of the frames runs at the frame rate,
    hop times fewer multiplies than after upsampling, in training and in generation alike.

    Look-ahead: sample t sees frames t // hop and t // hop + 1 only. Frames before frame 0 count as
    frame 0 (the silence before a recording has no frames of its own).
    """

    def __init__(self, hop):
        super().__init__()
        self.hop = hop
        d = torch.arange(2 * hop) - hop  # the offset t - f*hop each tap weighs
        self.kernel = nn.Parameter(1 - d.abs().float() / hop)

    def forward(self, y, start, length):
        """y: (B, C, F) terms of frames 0..F-1 -> (B, C, length) at positions start .. start+length-1.

        Needs F > (start + length - 1) // hop + 1: every position's next frame.
        """
        hop = self.hop
        last = (start + length - 1) // hop + 1  # the last frame a position needs
        if last >= y.shape[-1]:
            raise ValueError(
                f"features cover {y.shape[-1]} frames; positions up to {start + length - 1} need "
                f"{last + 1} (hop {hop}: frame f is centred on sample f*hop)"
            )
        first = start // hop  # the frame at or before the first position
        if first < 0:  # before frame 0 the frames are frame 0
            y = torch.cat([y[..., :1].expand(*y.shape[:-1], -first), y], -1)
            last -= first
            start -= first * hop
            first = 0
        y = y[..., first : last + 1]
        # sample f*hop + r of the block, for r in 0..hop-1: two weighted frames
        up = y[..., :-1, None] * self.kernel[hop:] + y[..., 1:, None] * self.kernel[:hop]  # (B, C, frames-1, hop)
        into = start - first * hop
        return up.flatten(-2)[..., into : into + length]
