"""Plot the layer statistics that `--stats` recorded in a run's log.json (the original's percentile plot)."""
import argparse
import json
import os

from wavenet import cli
from wavenet.errors import UserError
from wavenet.plots import plot_layer_stats


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("log", help="log.json of a run trained with --stats, or its --out folder")
    parser.add_argument("--output", "-o", default="",
                        help="PNG file prefix (default: <run folder>/stats): writes <prefix>_data.png and "
                             "<prefix>_grad.png")
    parser.add_argument("--layers", default="", help="Only parameters whose name matches this regex")
    args = parser.parse_args(argv)
    path = os.path.join(args.log, "log.json") if os.path.isdir(args.log) else args.log
    try:
        with open(path) as f:
            history = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path!r} ({e}); pass the log.json of a training run") from None
    prefix = args.output or os.path.join(os.path.dirname(path), "stats")
    for which in ("data", "grad"):
        panels = plot_layer_stats(history, f"{prefix}_{which}.png", which, args.layers)
        if panels == 0:
            raise UserError(f"{path!r} has no layer statistics{' for ' + args.layers if args.layers else ''}; "
                            "train with --stats")
        print(f"wrote {prefix}_{which}.png ({panels} parameters)")


if __name__ == "__main__":
    cli.run(main)
