"""The repeated units of both networks: Gated PixelCNN's gated block and WaveNet's residual layer.

Each is built from the causal primitives in `layers` and used by `models` for training and by the
samplers, cached, one step at a time.
"""

import torch.nn as nn

from .layers import CausalConv1d, HorizontalConv, VerticalConv, channel_groups, gated_activation, shift_down


class GatedBlock(nn.Module):
    """One layer of both stacks with gated units (Figure 2 of the Gated PixelCNN paper)."""

    def __init__(
        self, in_channels, hidden_dim, kernel_size, mask_type, groups, num_classes, residual, vertical_out=True
    ):
        super().__init__()
        in_groups = channel_groups(in_channels, groups)
        gate_groups = channel_groups(2 * hidden_dim, groups, gated=True)
        hidden_groups = channel_groups(hidden_dim, groups)
        self.vertical = VerticalConv(in_channels, 2 * hidden_dim, kernel_size)
        self.horizontal = HorizontalConv(in_channels, 2 * hidden_dim, kernel_size, mask_type, in_groups, gate_groups)
        # vertical -> horizontal link: it only ever receives rows above (after shift_down),
        # so it needs no mask
        self.link = nn.Conv2d(2 * hidden_dim, 2 * hidden_dim, 1)
        self.out = HorizontalConv(hidden_dim, hidden_dim, 1, "B", hidden_groups, hidden_groups)
        self.residual = residual
        # the last block's vertical output would feed nothing: it has no gate (and no label term)
        self.vertical_out = vertical_out
        if num_classes:
            # the paper's V^T h, separately for the filter and the gate halves of each stack
            self.label_v = nn.Embedding(num_classes, 2 * hidden_dim) if vertical_out else None
            self.label_h = nn.Embedding(num_classes, 2 * hidden_dim)

    def condition(self, label):
        """Class-label terms for both stacks: label (B,) -> two (B, 2*hidden, 1, 1) or Nones."""
        if label is None:
            return None, None
        cond_v = self.label_v(label)[:, :, None, None] if self.label_v is not None else None
        return cond_v, self.label_h(label)[:, :, None, None]

    def forward(self, v, h, label=None):
        """v, h: (B, C_in, H, W) stacks -> (B, hidden, H, W) each (v is None after the last block)."""
        cond_v, cond_h = self.condition(label)
        v_pre = self.vertical(v)  # (B, 2*hidden, H, W), rows <= i
        link = self.link(shift_down(v_pre))  # rows < i only
        v = gated_activation(v_pre, cond_v) if self.vertical_out else None
        return v, self.horizontal_out(self.horizontal(h) + link, h, cond_h)

    def horizontal_out(self, h_pre, h_in, cond_h):
        """Gate, mix with the masked 1x1 and add the residual: h_pre (B, 2*hidden, R, W) -> (B, hidden, R, W).

        h_in is the block's horizontal input at the same positions (for the residual).
        """
        h = self.out(gated_activation(h_pre, cond_h))
        return h_in + h if self.residual else h


class ResidualLayer(nn.Module):
    """Dilated causal convolution, gated unit, 1x1 residual and 1x1 skip (WaveNet Fig. 4)."""

    def __init__(self, hidden_dim, skip_dim, kernel_width, dilation, num_speakers, residual=True, cin_channels=0):
        super().__init__()
        self.dilated = CausalConv1d(hidden_dim, 2 * hidden_dim, kernel_width, dilation)
        # global conditioning (paper section 2.5): V^T h for the filter and gate halves
        self.speaker = nn.Embedding(num_speakers, 2 * hidden_dim) if num_speakers else None
        # local conditioning (section 2.5): V * y, a 1x1 projection of the features, applied at the
        # frame rate (see layers.FrameUpsampler); the dilated convolution's bias already is its bias
        self.features = nn.Conv1d(cin_channels, 2 * hidden_dim, 1, bias=False) if cin_channels else None
        # the last layer's residual output feeds nothing, so it does not exist
        self.residual = nn.Conv1d(hidden_dim, hidden_dim, 1) if residual else None
        self.skip = nn.Conv1d(hidden_dim, skip_dim, 1)

    def forward(self, x, speaker, n, local=None):
        """x: (B, C, reach + T) -> residual output (B, C, T) or None, skip of the last n steps (B, S, n).

        local: this layer's local conditioning at the T output positions, (B, 2C, T), or None.
        """
        cond = self.speaker(speaker)[:, :, None] if self.speaker is not None else None
        if local is not None:
            cond = local if cond is None else cond + local
        z = gated_activation(self.dilated(x), cond)  # (B, C, T)
        skip = self.skip(z[:, :, -n:])
        if self.residual is None:
            return None, skip
        return x[:, :, self.dilated.reach :] + self.residual(z), skip
