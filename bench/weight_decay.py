"""How large Adam's L2 term is beside the loss gradient, for each kind of weight of a Gated PixelCNN snapshot.

    python bench/weight_decay.py -m /path/to/run --data_dir ../shared/data      # MNIST, --weight_decay 1e-4

`--weight_decay` (as in the original) adds weight_decay * w to every gradient before Adam normalises it.
The loss is the mean nll per sub-pixel, and on MNIST most sub-pixels are black background that the model
predicts well, so the loss gradients are small. Where the L2 term is larger than the mean loss gradient
(a ratio above 1), Adam's steps for those weights mostly pull them to zero rather than lower the loss.
The mean loss gradient is taken over --batches training batches drawn from --seed, at the snapshot's
weights, with the trainer's loss (nll per sub-pixel in nats); norms are over all tensors of a kind.
"""

import argparse
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wavenet import argtypes, checkpoint, cli  # noqa: E402
from wavenet.image_data import DEFAULT_DATA_DIR, load_images  # noqa: E402
from wavenet.launch import Settings  # noqa: E402
from wavenet.objectives import pixelcnn_nll  # noqa: E402


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_sampling_flags(parser, "GatedPixelCNN")
    parser.add_argument(
        "--weight_decay",
        type=argtypes.non_negative_float,
        default=Settings.weight_decay,
        help=f"The L2 factor to compare (default: {Settings.weight_decay}, train.py's)",
    )
    parser.add_argument("--batches", type=argtypes.positive_int, default=4, help="Training batches (default: 4)")
    parser.add_argument("-b", "--batchsize", type=argtypes.positive_int, default=32, help="Images each (default: 32)")
    parser.add_argument("--seed", type=argtypes.seed, default=0, help="Seed of the batches' draw (default: 0)")
    parser.add_argument(
        "--data_dir",
        help=f"Folder that holds MNIST/raw (default: the one the snapshot's run used, else {DEFAULT_DATA_DIR!r})",
    )
    return parser.parse_args(argv)


def weight_kind(name):
    """A parameter's name without its block number: 'blocks.3.label_h.weight' -> 'block label_h.weight'."""
    inside = re.sub(r"^blocks\.\d+\.", "", name)
    return f"block {inside}" if inside != name else f"head {name}"


def mean_loss_gradients(model, dataset, batches, batchsize, seed):
    """{parameter name: its loss gradient averaged over `batches` random batches of the ImageSet `dataset`}.

    The loss is the trainer's: nll summed over the batch / (images * sub-pixels per image).
    """
    q_all, labels_all = dataset.tensors
    dims = q_all[0].numel()
    loss_of = pixelcnn_nll(model.levels, conditioned=model.num_classes > 0)
    generator = torch.Generator().manual_seed(seed)
    total = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    model.train()
    for _ in range(batches):
        pick = torch.randint(0, len(labels_all), (batchsize,), generator=generator)
        model.zero_grad(set_to_none=True)
        nll_sum, items = loss_of(model, (q_all[pick], labels_all[pick]))
        (nll_sum / (items * dims)).backward()
        for name, p in model.named_parameters():
            total[name] += p.grad
    return {name: g / batches for name, g in total.items()}


def decay_table(model, gradients, weight_decay):
    """[(kind, tensors, |loss gradient|, |weight_decay * w|, ratio)] in the model's order of parameters."""
    squares = {}  # kind -> [tensors, sum of squared gradients, sum of squared weights]
    for name, p in model.named_parameters():
        row = squares.setdefault(weight_kind(name), [0, 0.0, 0.0])
        row[0] += 1
        row[1] += gradients[name].pow(2).sum().item()
        row[2] += p.detach().pow(2).sum().item()
    rows = []
    for kind, (tensors, grad_sq, weight_sq) in squares.items():
        gradient, decay = grad_sq**0.5, weight_decay * weight_sq**0.5
        rows.append((kind, tensors, gradient, decay, decay / gradient if gradient > 0 else float("inf")))
    return rows


def main(argv=None):
    args = parse_args(argv)
    path = cli.resolve_model(args.model, "GatedPixelCNN")
    snapshot = checkpoint.load(path)
    model = checkpoint.build_model(snapshot, "GatedPixelCNN", path)
    meta = snapshot["meta"]
    dataset = load_images(meta["dataset"], checkpoint.data_dir(snapshot, args.data_dir), True, model.levels)
    gradients = mean_loss_gradients(model, dataset, args.batches, args.batchsize, args.seed)
    print(
        f"{path}: {meta['dataset']} at {model.levels} levels; mean loss gradient over {args.batches} batches "
        f"of {args.batchsize}, L2 term at --weight_decay {args.weight_decay:g}"
    )
    print(f"{'weights':26s} {'tensors':>7s} {'|loss gradient|':>16s} {'|L2 term|':>10s} {'L2 / gradient':>14s}")
    for kind, tensors, gradient, decay, ratio in decay_table(model, gradients, args.weight_decay):
        print(f"{kind:26s} {tensors:7d} {gradient:16.2e} {decay:10.2e} {ratio:14.2f}")


if __name__ == "__main__":
    cli.run(main)
