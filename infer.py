"""Sample a grid of images from a trained Gated PixelCNN snapshot."""

import argparse

import torch

from wavenet import argtypes, checkpoint, cli, estimates, limits
from wavenet.errors import UserError
from wavenet.image_grid import check_output, save_grid
from wavenet.pixelcnn_sampling import sample_images


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="PixelCNN: sample images. The architecture comes from the snapshot; the architecture "
        "flags are only checked against it.",
        formatter_class=cli.HelpFormatter,
    )
    cli.add_sampling_flags(parser, "GatedPixelCNN")
    parser.add_argument("--hidden_dim", "-d", type=argtypes.positive_int, help="Number of hidden dimensions")
    parser.add_argument(
        "--out_hidden_dim", type=argtypes.positive_int, help="Number of hidden dimensions of the output layer"
    )
    parser.add_argument(
        "--blocks_num", "-n", type=argtypes.non_negative_int, help="Number of layers (gated blocks after the first)"
    )
    parser.add_argument("--levels", type=argtypes.positive_int, help="Level number to quantisize pixel values")
    parser.add_argument(
        "--output",
        "-o",
        default="samples.jpg",
        help="Output filename; its extension picks the format (.jpg, .png, ...)",
    )
    parser.add_argument(
        "--label",
        "-l",
        type=argtypes.class_label,
        help="Class label to generate: a number, or a class name the snapshot records (Fashion-MNIST's, a "
        "folder:PATH's subfolders) (default: row r of the grid gets label r modulo the number of classes)",
    )
    parser.add_argument(
        "--count",
        "-c",
        type=argtypes.positive_int,
        default=10,
        help="Number of images to generate (would be squared: so for 10 it would generate 100)",
    )
    parser.add_argument("--height", type=argtypes.positive_int, help="Output image height (default: training height)")
    parser.add_argument("--width", type=argtypes.positive_int, help="Output image width (default: training width)")
    parser.add_argument(
        "--seed",
        type=argtypes.seed,
        default=0,
        help=f"Random seed, 0..{argtypes.SEED_MAX}: the same seed gives the same images",
    )
    parser.add_argument(
        "--method",
        choices=("cached", "naive"),
        default="cached",
        help="cached: recompute only what each new sub-pixel changes; naive: the original's "
        "full forward pass per sub-pixel (same images, much slower)",
    )
    return parser.parse_args(argv)


def class_index(label, classes, model):
    """--label (a number or a class name, None: not given) as a class index of `model`; classes: the names the
    snapshot records, or None."""
    if label is None:
        return None
    if model.num_classes == 0:
        raise UserError(
            f"--label {label}: this model is unconditioned (trained on a folder with no class folders); drop --label"
        )
    names = list(classes or [])
    if label in names:  # a name first: a folder's classes may be called 1, 2, 3
        return names.index(label)
    if argtypes.is_integer(label) and 0 <= int(label) < model.num_classes:
        return int(label)
    known = f"labels 0..{model.num_classes - 1}" + (f" or one of {', '.join(names)}" if names else "")
    if argtypes.is_integer(label):
        raise UserError(f"--label {label} is out of range: this model knows {known}")
    raise UserError(f"--label {label} is not a class of this model: it knows {known}")


def main(argv=None):
    args = parse_args(argv)
    args.model = cli.resolve_model(args.model, "GatedPixelCNN")
    snapshot = checkpoint.load(args.model)
    model = checkpoint.build_model(snapshot, "GatedPixelCNN", args.model)
    checkpoint.check_flags(
        snapshot,
        {
            "hidden_dim": args.hidden_dim,
            "out_hidden_dim": args.out_hidden_dim,
            "blocks_num": args.blocks_num,
            "levels": args.levels,
        },
        args.model,
    )
    meta, classes = snapshot["meta"], model.num_classes
    label = class_index(args.label, meta.get("classes"), model)
    check_output(args.output)  # before sampling, which can take minutes
    device = cli.select_device(args.gpu)
    height, width = args.height or meta["height"], args.width or meta["width"]
    limits.check_memory(
        estimates.pixelcnn_sampling_bytes(model.config, args.count**2, height, width, args.method),
        f"-c {args.count} ({estimates.format_count(args.count**2)} images of {height}x{width}, --method {args.method})",
        "pass a smaller --count (the grid is count x count), --height or --width",
        device,
    )
    rows = torch.arange(args.count).repeat_interleave(args.count)  # row r holds label r (mod classes)
    if label is not None:
        rows.fill_(label)
    images = sample_images(
        model.to(device),
        args.count**2,
        height,
        width,
        label=(rows % classes).to(device) if classes else None,
        generator=torch.Generator(device).manual_seed(args.seed),
        method=args.method,
    )
    save_grid(images, model.levels, args.count, args.output)
    names = meta.get("classes")
    of = "" if label is None else f" of class {names[label] if names else label}"
    print(f"wrote {args.count}x{args.count} samples{of} to {args.output}")


if __name__ == "__main__":
    cli.run(main)
