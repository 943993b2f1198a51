"""Refusing absurd requests up front: the memory or time a run would need, against what this machine has.

The figures come from `estimates`; each check raises a UserError that gives the estimate and
names the flags to change, before anything large is built or allocated.
"""

import os

import torch

from . import estimates
from .errors import UserError
from .models import receptive_field


def available_memory(device):
    """Bytes a new allocation can still get on `device`: free GPU memory for CUDA, else the kernel's
    MemAvailable plus free swap from /proc/meminfo (physical pages where /proc is absent)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.split()[1:]}
        return fields["MemAvailable"] + fields.get("SwapFree", 0)
    except (OSError, KeyError, ValueError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_memory(need, what, fix, device=None):
    """UserError unless `need` bytes fit the memory of `device` (the CPU when None).

    what: the request and its estimate ("-c 10000: 100,000,000 images of 28x28x3"); fix: what to
    change, naming the flags. The message gives both figures.
    """
    device = torch.device("cpu") if device is None else device
    free = available_memory(device)
    if need > free:
        where = "GPU memory" if device.type == "cuda" else "memory"
        raise UserError(
            f"{what} needs at least {estimates.format_bytes(need)} of {where}, and this machine has "
            f"{estimates.format_bytes(free)} available; {fix}"
        )


# the flags that set each model's size, for the message that refuses one too large
SIZE_FLAGS = {
    "GatedPixelCNN": "--hidden_dim (-d), --blocks_num (-n), --out_hidden_dim, --levels or --batchsize (-b)",
    "WaveNet": "--hidden_dim, --out_hidden_dim, --stacks_num (-s), --layers_num (-l) or --batchsize (-b)",
}


def check_training_memory(config, batch, device, height=None, width=None):
    """UserError, before the model is built, if training `config` (a model config) at `batch` cannot fit the
    memory of `device` (estimates.training_bytes); the message names the size flags."""
    model = type(config).__name__.removesuffix("Config")
    what = f"training this {model} ({estimates.format_count(estimates.parameters(config))} parameters"
    if hasattr(config, "layers_num"):
        R = receptive_field(config.stacks_num, config.layers_num, config.kernel_width)
        what += f", a receptive field of {estimates.format_count(R)} samples"
    check_memory(
        estimates.training_bytes(config, batch, height, width),
        what + f", -b {batch})",
        f"make {SIZE_FLAGS[model]} smaller",
        device,
    )


MAX_SECONDS = 7 * 86400  # longer runs are refused as a mistake: a week, at this project's measured rates


def check_duration(seconds, what, fix):
    """UserError if a request would take longer than MAX_SECONDS (a week)."""
    if seconds > MAX_SECONDS:
        raise UserError(
            f"{what} would take about {estimates.format_seconds(seconds)} at the rate this project measured, "
            f"over the limit of {estimates.format_seconds(MAX_SECONDS)}; {fix}"
        )
