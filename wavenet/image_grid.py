"""Writing sampled images to disk as one grid picture."""

import os

import torch.nn.functional as F
from PIL import Image
from torchvision.utils import make_grid, save_image

from .errors import UserError
from .files import check_output_file
from .image_data import dequantize

MIN_TILE = 32  # smaller images (8x8 digits) are enlarged, nearest neighbour, to be visible in a grid


def check_output(path):
    """UserError unless `path` names an image file in an existing folder (checked before sampling)."""
    check_output_file(path, "--output", "samples.png")
    if os.path.splitext(path)[1].lower() not in Image.registered_extensions():
        raise UserError(f"--output {path!r}: unknown image extension; use .png or .jpg, for example")


GRID = dict(padding=2, pad_value=0.5)  # grey lines between the images


def tiles(images, levels):
    """Levels (N, C, H, W) -> floats in [0, 1] on the CPU, enlarged to at least MIN_TILE pixels a side."""
    x = dequantize(images.cpu(), levels)
    scale = max(1, MIN_TILE // x.shape[-1])
    return F.interpolate(x, scale_factor=scale, mode="nearest") if scale > 1 else x


def grid(images, levels, nrow):
    """Levels (N, C, H, W) -> one picture float (C, H', W') in [0, 1], `nrow` images per row (as save_grid lays
    them out; TensorBoard's epoch-end samples)."""
    return make_grid(tiles(images, levels), nrow=nrow, **GRID)


def save_grid(images, levels, nrow, path):
    """Write levels (N, C, H, W) as a grid of `nrow` per row; the format follows the file extension."""
    x = tiles(images, levels)
    check_output(path)
    try:
        save_image(x, path, nrow=nrow, **GRID)
    except ValueError as e:  # PIL cannot tell the format from the extension
        raise UserError(f"--output {path!r}: {e}; use an image extension such as .jpg or .png") from None
    except OSError as e:
        raise UserError(f"--output {path!r}: cannot write the file ({e.strerror or e}); pick a writable path") from None
