"""What every command-line script shares: flag checks, device choice, and one-line errors."""
import argparse
import os
import sys

import torch

from .errors import UserError


def run(main):
    """Call main(); a UserError becomes `error: <message>` on stderr and exit status 2, no traceback."""
    try:
        main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def positive_int(text):
    """argparse type: an integer > 0."""
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def non_negative_int(text):
    """argparse type: an integer >= 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive integer, got {text}")
    return value


def positive_float(text):
    """argparse type: a number > 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def select_device(gpu):
    """--gpu N: cuda:N for N >= 0, the CPU for a negative N; UserError if that GPU is absent.

    Under torchrun each process takes the GPU of its LOCAL_RANK instead of N.
    """
    if gpu < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--gpu {gpu}: no CUDA GPU is available here; pass --gpu -1 to run on the CPU")
    index = int(os.environ.get("LOCAL_RANK", gpu))
    if index >= torch.cuda.device_count():
        raise UserError(f"--gpu {index}: only {torch.cuda.device_count()} CUDA GPU(s) here "
                        f"(0..{torch.cuda.device_count() - 1}); pass a valid id or --gpu -1 for the CPU")
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def writable_folder(path, flag):
    """Create folder `path` if needed; UserError naming `flag` if it cannot be written."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise UserError(f"{flag} {path!r}: cannot create the folder ({e.strerror}); "
                        "pick a folder you can write") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path!r}: the folder is not writable; pick a folder you can write")
    return path
