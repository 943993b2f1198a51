"""The two networks: Gated PixelCNN (van den Oord et al. 2016, arXiv:1606.05328)
and WaveNet (van den Oord et al. 2016, arXiv:1609.03499).

Each model's whole config is a frozen dataclass (`GatedPixelCNNConfig`,
`WaveNetConfig`, after nanoGPT's `GPTConfig`): its fields are the constructor's
arguments, `model.config` is the instance, and checkpoints store it as a dict
(`dataclasses.asdict`) and rebuild the model with `Model(**that_dict)`.
"""

import inspect
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .blocks import GatedBlock, ResidualLayer
from .layers import CausalConv1d, FrameUpsampler, HorizontalConv, causal_inputs, channel_groups

FIRST_KERNEL = 7  # the first block sees a 7x7 neighbourhood (mask A), as in the paper
BLOCK_KERNEL = 3  # every later block is 3x3 (mask B)


def takes_config(config_type):
    """The signature of an `__init__(self, *args, **kwargs)` that hands its arguments to `config_type`.

    Set as `__init__.__signature__`, it shows the config's fields, with their defaults,
    to `inspect.signature(Model)` and `help(Model)` instead of `*args, **kwargs`.
    """
    fields = inspect.signature(config_type)
    self = inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return fields.replace(parameters=[self, *fields.parameters.values()])


@dataclass(frozen=True)
class GatedPixelCNNConfig:
    """Everything that defines a GatedPixelCNN: its constructor's arguments and a checkpoint's "config"."""

    in_channels: int  # C, colour channels of an image (1 grey, 3 RGB), generated in that order
    hidden_dim: int  # channels of the vertical and horizontal stacks in every block
    blocks_num: int  # 3x3 blocks (mask B) after the first 7x7 one (mask A)
    out_hidden_dim: int  # channels of the output head's hidden layer, between the stacks and the logits
    levels: int  # quantised values per sub-pixel: logits (B, levels, C, H, W)
    num_classes: int = 10  # class labels it is conditioned on; 10 fits MNIST and CIFAR-10. 0: unconditional


class GatedPixelCNN(nn.Module):
    """Class-conditional Gated PixelCNN over `levels` quantised values per sub-pixel.

    Sub-pixels are predicted in raster order, and within a pixel in channel order
    (R -> G -> B); hidden channel c belongs to colour group c % in_channels.
    """

    def __init__(self, *args, **kwargs):
        # The arguments are GatedPixelCNNConfig's fields, positional or by name, with its defaults.
        # Taking *args and handing them over keeps the dataclass their one definition (a second
        # list here could drift from it); it raises TypeError for a missing or unknown argument.
        super().__init__()
        self.config = c = GatedPixelCNNConfig(*args, **kwargs)
        self.in_channels = c.in_channels
        self.levels = c.levels
        self.num_classes = c.num_classes
        groups = c.in_channels
        # block 0 is the 7x7 one over the image: mask A, no residual (its input has C channels); the
        # last block's vertical output would feed nothing
        kernels = [FIRST_KERNEL] + [BLOCK_KERNEL] * c.blocks_num
        self.blocks = nn.ModuleList(
            GatedBlock(
                c.hidden_dim if n else c.in_channels,
                c.hidden_dim,
                kernel,
                "B" if n else "A",
                groups,
                c.num_classes,
                residual=n > 0,
                vertical_out=n < c.blocks_num,
            )
            for n, kernel in enumerate(kernels)
        )
        hidden_groups = channel_groups(c.hidden_dim, groups)
        out_groups = channel_groups(c.out_hidden_dim, groups)
        # logits channel l*C + c belongs to colour c, so a view to (levels, C) keeps groups intact
        logit_groups = channel_groups(c.levels * c.in_channels, groups)
        self.out_hidden = HorizontalConv(c.hidden_dim, c.out_hidden_dim, 1, "B", hidden_groups, out_groups)
        self.out = HorizontalConv(c.out_hidden_dim, c.levels * c.in_channels, 1, "B", out_groups, logit_groups)

    __init__.__signature__ = takes_config(GatedPixelCNNConfig)

    def forward(self, x, label=None):
        """x: (B, C, H, W) values q/(levels-1) in [0, 1]; label: (B,) long class ids.

        Returns logits (B, levels, C, H, W); logits at (c, i, j) see only sub-pixels
        before (c, i, j) in raster-then-channel order.
        """
        B, C, H, W = x.shape
        self.check_label(label, B)
        v = h = self.centre(x)
        for block in self.blocks:
            v, h = block(v, h, label)
        return self.logits(h)

    @staticmethod
    def centre(x):
        """Map inputs from [0, 1] to [-1, 1]; the convolutions' zero padding then reads as mid-grey."""
        return 2 * x - 1

    def logits(self, h):
        """Output head: horizontal stack (B, hidden, R, W) -> logits (B, levels, C, R, W)."""
        B, _, R, W = h.shape
        out = self.out(F.relu(self.out_hidden(F.relu(h))))  # (B, levels*C, R, W)
        return out.view(B, self.levels, self.in_channels, R, W)

    def check_label(self, label, batch):
        """Raise ValueError unless `label` fits this model (None iff unconditional)."""
        if self.num_classes == 0:
            if label is not None:
                raise ValueError("this GatedPixelCNN is unconditional: pass label=None")
            return
        if label is None or label.shape != (batch,):
            raise ValueError(f"label must be a long tensor of shape ({batch},)")
        check_ids("label", label, self.num_classes)


def check_ids(name, ids, count):
    """Raise ValueError if a class or speaker id in `ids` is outside 0..count-1.

    Checked for CPU tensors only: on a GPU, reading min and max back would make every forward wait for
    the device (and break a --compile graph), and an id out of range stops the embedding kernel with a
    device-side assert there anyway. The scripts check user-given ids on the CPU before they get here.
    """
    if ids.device.type != "cpu" or torch.compiler.is_compiling() or not ids.numel():
        return
    if ids.min() < 0 or ids.max() >= count:
        raise ValueError(f"{name} out of range 0..{count - 1}: got {ids.tolist()}")


def receptive_field(stacks_num, layers_num, kernel_width=2):
    """Number of past samples WaveNet's output at t sees: x[t-R .. t-1].

    The input convolution sees `kernel_width` samples; each dilated layer adds
    (kernel_width - 1) * dilation, with dilations 1, 2, ..., 2**(layers_num-1) per stack.
    """
    dilations = stacks_num * (2**layers_num - 1)
    return (kernel_width - 1) * (dilations + 1) + 1


@dataclass(frozen=True)
class WaveNetConfig:
    """Everything that defines a WaveNet: its constructor's arguments and a checkpoint's "config"."""

    levels: int  # mu-law levels: codes 0..levels-1 in, logits (B, levels, T) out
    hidden_dim: int  # residual_channels of the input convolution and of every layer
    out_hidden_dim: int  # skip_channels: the skips are summed at this width, which is the head's
    stacks_num: int  # stacks of dilated layers, each restarting at dilation 1
    layers_num: int  # layers per stack, with dilations 1, 2, ..., 2**(layers_num - 1)
    kernel_width: int = 2  # taps of every causal convolution; 2 is the paper's
    num_speakers: int = 0  # speaker ids for global conditioning; 0: unconditioned
    cin_channels: int = 0  # feature channels (log-mel bands) for local conditioning; 0: none
    hop_length: int = 0  # samples per feature frame, with cin_channels > 0


class WaveNet(nn.Module):
    """WaveNet over mu-law codes: logits at t predict x[t] from x[t-R .. t-1].

    Conditioned globally on a speaker id (num_speakers > 0) and/or locally on a feature time series
    such as log-mel frames (cin_channels > 0), as in section 2.5 of the paper: both add to the
    filter and the gate of every layer.
    """

    def __init__(self, *args, **kwargs):
        # The arguments are WaveNetConfig's fields, positional or by name, with its defaults;
        # see GatedPixelCNN.__init__ for why they are not listed here.
        super().__init__()
        self.config = c = WaveNetConfig(*args, **kwargs)
        self.levels = c.levels
        self.num_speakers = c.num_speakers
        self.cin_channels = c.cin_channels
        self.receptive_field = receptive_field(c.stacks_num, c.layers_num, c.kernel_width)
        if c.cin_channels and c.hop_length <= 0:
            raise ValueError(f"local conditioning needs hop_length > 0, got {c.hop_length}")
        self.upsample = FrameUpsampler(c.hop_length) if c.cin_channels else None
        # the causal input convolution over one-hot codes (kept as a conv weight; see embed)
        self.input_conv = CausalConv1d(c.levels, c.hidden_dim, c.kernel_width)
        dilations = [2**i for _ in range(c.stacks_num) for i in range(c.layers_num)]
        # skip connections are summed at out_hidden_dim channels, the width of the head
        self.layers = nn.ModuleList(
            [
                ResidualLayer(
                    c.hidden_dim,
                    c.out_hidden_dim,
                    c.kernel_width,
                    d,
                    c.num_speakers,
                    residual=i < len(dilations) - 1,
                    cin_channels=c.cin_channels,
                )
                for i, d in enumerate(dilations)
            ]
        )
        self.head = nn.Sequential(
            nn.ReLU(),
            nn.Conv1d(c.out_hidden_dim, c.out_hidden_dim, 1),
            nn.ReLU(),
            nn.Conv1d(c.out_hidden_dim, c.levels, 1),
        )

    __init__.__signature__ = takes_config(WaveNetConfig)

    @property
    def silence(self):
        """The mu-law code of 0.0 (see audio.mu_law_encode), assumed before the first sample."""
        return self.levels // 2

    def forward(self, x, speaker=None, features=None, output_length=None, offset=0):
        """x: codes long (B, T), or their one-hot float (B, levels, T); speaker: (B,) long ids;
        features: (B, cin_channels, F) frames, frame f centred on x[f * hop_length].

        Returns logits (B, levels, N) over the last N = output_length (default T)
        positions of x; position t sees only x[t-R .. t-1], silence before x[0], and
        the frames t // hop and t // hop + 1 (see layers.FrameUpsampler). offset: the
        frames' position of x[0] (default 0; the samplers start one step early).
        """
        B, T = x.shape[0], x.shape[-1]
        N = T if output_length is None else output_length
        self.check_speaker(speaker, B)
        self.check_features(features, B)
        R = self.receptive_field
        history = causal_inputs(x, R, N, self.silence)  # (B, [levels,] N + R - 1)
        h = self.embed(history)  # (B, hidden, N + R - k)
        skips = 0
        for layer in self.layers:
            n = h.shape[-1] - layer.dilated.reach  # the layer's outputs: positions T - n .. T - 1
            h, skip = layer(h, speaker, N, self.local_terms(layer, features, offset + T - n, n))
            skips = skips + skip  # (B, out_hidden, N)
        return self.head(skips)

    def local_terms(self, layer, features, start, length):
        """`layer`'s local conditioning at positions start .. start+length-1: (B, 2*hidden, length), or None.

        The layer's 1x1 projection runs on the frames, then the upsampler interpolates: the same
        result as upsampling first, since the upsampler's kernel is shared by every channel.
        """
        if features is None:
            return None
        return self.upsample(layer.features(features), start, length)

    def embed(self, x):
        """Causal input convolution: x (B, T) codes or (B, levels, T) one-hot -> (B, hidden, T - k + 1)."""
        conv = self.input_conv
        if x.dtype.is_floating_point:
            return conv(x)
        # a convolution over one-hot codes is a sum of table look-ups, one per tap
        n = x.shape[1] - conv.reach
        h = sum(F.embedding(x[:, i : i + n], conv.weight[:, :, i].t()) for i in range(conv.reach + 1))
        return h.transpose(1, 2) + conv.bias[:, None]  # (B, hidden, n)

    def check_speaker(self, speaker, batch):
        """Raise ValueError unless `speaker` fits this model (None iff unconditioned)."""
        if self.num_speakers == 0:
            if speaker is not None:
                raise ValueError("this WaveNet has no speaker conditioning: pass speaker=None")
            return
        if speaker is None or speaker.shape != (batch,):
            raise ValueError(f"speaker must be a long tensor of shape ({batch},)")
        check_ids("speaker", speaker, self.num_speakers)

    def check_features(self, features, batch):
        """Raise ValueError unless `features` fits this model (None iff not locally conditioned)."""
        if self.cin_channels == 0:
            if features is not None:
                raise ValueError("this WaveNet has no local conditioning: pass features=None")
            return
        if features is None or features.dim() != 3 or features.shape[:2] != (batch, self.cin_channels):
            shape = None if features is None else tuple(features.shape)
            raise ValueError(
                f"features must be a float tensor of shape ({batch}, {self.cin_channels}, frames), got {shape}"
            )
