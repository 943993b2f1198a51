"""What a request will cost, worked out from its numbers before anything is built or allocated.

Parameter counts come from a model's config alone (they equal `sum(p.numel())` of the model it
builds), memory from the tensors a run cannot do without, and generation time from rates this
project measured (README, Benchmarks). Each memory figure is a lower bound: what it leaves out
(allocator slack, temporaries, the data) only adds to it, so a request above the machine's memory
cannot run. The scripts compare them with the machine (limits.check_memory, limits.check_duration) and
refuse up front, with the figure, what could not finish. Plain Python integers throughout: an
absurd config (2**100000 dilations) gives an absurd number, never an overflow.
"""

import math

from .models import BLOCK_KERNEL, FIRST_KERNEL, GatedPixelCNNConfig, WaveNetConfig, receptive_field

FLOAT32, INT64 = 4, 8  # bytes per value
# weights, their gradients and Adam's two moments, float32 each
TRAINING_BYTES_PER_PARAMETER = 4 * FLOAT32

# bench/sampling_wavenet.py on this project's machine (README, Benchmarks), for the default WaveNet
# (32/32 channels, 5 x 10 layers, 256 levels); the other configs are scaled by their arithmetic
MEASURED_WAVENET = WaveNetConfig(levels=256, hidden_dim=32, out_hidden_dim=32, stacks_num=5, layers_num=10)
NUMBA_SAMPLES_PER_SECOND = 43_484  # one stream on one thread; the kernel's cost is one multiply-add per weight
TORCH_STEPS_PER_SECOND = 154  # the cached torch path: a few small ops per layer and step, for all streams at once
TORCH_STEP_OVERHEAD = 0.15e-3  # seconds of each torch step outside the layers (input, head, draw), measured at 1 layer
# the naive path: 4.0 samples/s averaged over the first 16,000 samples, each step a forward pass over
# all samples so far (8,000 on average) plus the receptive field
NAIVE_SAMPLES_PER_SECOND, NAIVE_AVERAGE_POSITIONS = 4.0, 8_000 + receptive_field(5, 10)


def pixelcnn_parameters(config):
    """Number of parameters of `GatedPixelCNN(**config)` (a GatedPixelCNNConfig), without building it."""
    c = config
    h, classes = c.hidden_dim, c.num_classes

    def block(in_channels, kernel, vertical_out):  # blocks.GatedBlock
        rows, cols = kernel // 2 + 1, kernel // 2 + 1  # VerticalConv (k//2 + 1) x k, HorizontalConv 1 x (k//2 + 1)
        vertical = 2 * h * in_channels * rows * kernel + 2 * h
        horizontal = 2 * h * in_channels * cols + 2 * h
        link = (2 * h) ** 2 + 2 * h
        out = h * h + h
        labels = classes * 2 * h * (2 if vertical_out else 1)  # label_h, and label_v where there is a vertical output
        return vertical + horizontal + link + out + labels

    n = c.blocks_num  # block 0 is the 7x7 one; only the last block has no vertical output
    blocks = (
        block(c.in_channels, FIRST_KERNEL, False)
        if n == 0
        else block(c.in_channels, FIRST_KERNEL, True)
        + (n - 1) * block(h, BLOCK_KERNEL, True)
        + block(h, BLOCK_KERNEL, False)
    )
    logits = c.levels * c.in_channels
    head = (h * c.out_hidden_dim + c.out_hidden_dim) + (c.out_hidden_dim * logits + logits)
    return blocks + head


def wavenet_parameters(config):
    """Number of parameters of `WaveNet(**config)` (a WaveNetConfig), without building it."""
    c = config
    C, S, k = c.hidden_dim, c.out_hidden_dim, c.kernel_width
    layers = c.stacks_num * c.layers_num
    per_layer = (
        (2 * C * C * k + 2 * C) + c.num_speakers * 2 * C + (S * C + S)
    )  # dilated, speaker, skip (blocks.ResidualLayer)
    residuals = (layers - 1) * (C * C + C) if layers else 0  # the last layer has none
    embed = C * c.levels * k + C
    head = (S * S + S) + (c.levels * S + c.levels)
    return embed + layers * per_layer + residuals + head


def pixelcnn_training_bytes(config, batch, height, width):
    """Memory one training step of `config` needs at least: weights, gradients and Adam's moments, and the
    (batch, 2*hidden, height, width) pre-activation of both stacks that every block keeps for the backward pass."""
    activations = (config.blocks_num + 1) * 2 * batch * 2 * config.hidden_dim * height * width * FLOAT32
    return pixelcnn_parameters(config) * TRAINING_BYTES_PER_PARAMETER + activations


def wavenet_training_bytes(config, batch, window):
    """Memory one training step of `config` on windows of `window` samples needs at least: weights, gradients
    and Adam's moments, and the (batch, 2*hidden, window) dilated-convolution output every layer keeps."""
    layers = config.stacks_num * config.layers_num
    activations = layers * batch * 2 * config.hidden_dim * window * FLOAT32
    return wavenet_parameters(config) * TRAINING_BYTES_PER_PARAMETER + activations


def parameters(config):
    """Number of parameters of the model a GatedPixelCNNConfig or WaveNetConfig builds, without building it."""
    return pixelcnn_parameters(config) if isinstance(config, GatedPixelCNNConfig) else wavenet_parameters(config)


def training_bytes(config, batch, height=None, width=None):
    """Memory one training step at `batch` needs at least: pixelcnn_training_bytes (images of height x width)
    or wavenet_training_bytes (windows of at least the receptive field)."""
    if isinstance(config, GatedPixelCNNConfig):
        return pixelcnn_training_bytes(config, batch, height, width)
    return wavenet_training_bytes(
        config, batch, receptive_field(config.stacks_num, config.layers_num, config.kernel_width)
    )


def pixelcnn_sampling_bytes(config, count, height, width, method="cached"):
    """Memory `pixelcnn_sampling.sample_images` needs at least for `count` images of height x width.

    The image being filled (float32) and the drawn values (int64), plus for "cached" every block's
    vertical window, horizontal row and links, for "naive" one full pass's pre-activations of both stacks.
    """
    C, h = config.in_channels, config.hidden_dim
    images = count * C * height * width * (FLOAT32 + INT64)
    if method == "naive":
        return images + 2 * count * 2 * h * height * width * FLOAT32

    def caches(c_in, kernel):  # pixelcnn_sampling.CachedStacks, per block
        half = kernel // 2
        return count * (c_in * (half + 1) * (width + 2 * half) + (half + width) * c_in + width * 2 * h) * FLOAT32

    return images + caches(C, FIRST_KERNEL) + config.blocks_num * caches(h, BLOCK_KERNEL)


def generation_bytes(count, length):
    """Memory `wavenet_sampling.generate` needs at least: the int64 codes (count, length), held twice while
    the blocks of steps are joined into one tensor."""
    return 2 * count * length * INT64


def generation_seconds(config, count, length, method, threads=1):
    """About how long `generate` takes for `count` x `length` samples of a WaveNet `config` with `method`
    ("numba", "torch" or "naive"; the numba kernel runs min(threads, count) streams at once), at the rates
    measured for MEASURED_WAVENET, scaled by the work per sample."""
    if method == "numba":
        rate = NUMBA_SAMPLES_PER_SECOND * wavenet_parameters(MEASURED_WAVENET) / wavenet_parameters(config)
        return count * length / (rate * max(1, min(threads, count)))
    layers = config.stacks_num * config.layers_num
    measured_layers = MEASURED_WAVENET.stacks_num * MEASURED_WAVENET.layers_num
    if method == "torch":
        per_layer = (1 / TORCH_STEPS_PER_SECOND - TORCH_STEP_OVERHEAD) / measured_layers
        return length * (TORCH_STEP_OVERHEAD + layers * per_layer)
    # naive: step t is a forward pass over t + R positions, length**2 / 2 + R * length positions in all
    R = receptive_field(config.stacks_num, config.layers_num, config.kernel_width)
    positions = length * length / 2 + R * length
    work = wavenet_parameters(config) / wavenet_parameters(MEASURED_WAVENET)
    return count * positions * work / (NAIVE_SAMPLES_PER_SECOND * NAIVE_AVERAGE_POSITIONS)


def format_bytes(n):
    """n bytes as '1.2 GB' (decimal units), '3.4 TB', or '10^25 bytes' (rounded down) beyond petabytes; any int."""
    if n < 10**15:
        for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6)):
            if n >= size:
                return f"{n / size:,.1f} {unit}"
        return f"{n / 10**6:.2f} MB"
    return f"10^{int(math.log10(n))} bytes"


def format_count(n):
    """An integer with thousands separators, or 'about 10^N' beyond 10^15 (str() refuses ints over 4,300 digits)."""
    return f"{n:,}" if n < 10**15 else f"about 10^{int(math.log10(n))}"


def format_seconds(s):
    """A duration as '12 s', '3.4 min', '5.6 h' or '7.8 days'."""
    if s < 60:
        return f"{s:.0f} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    if s < 2 * 86400:
        return f"{s / 3600:,.1f} h"
    return f"{s / 86400:,.0f} days" if s < 1e15 else f"about 10^{int(math.log10(s / 86400))} days"
