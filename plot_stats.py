"""Plot the layer statistics that `--stats` recorded in a run's log.json (the original's percentile plot)."""

import argparse
import json
import os
import re

from wavenet import cli
from wavenet.errors import UserError
from wavenet.plots import plot_layer_stats, recorded_parameters

NAMES_SHOWN = 5  # recorded parameter names an error lists: enough to show the naming scheme


def layer_pattern(text):
    """--layers as a compiled regular expression; UserError with re's reason if it is not one."""
    try:
        return re.compile(text)
    except re.error as e:
        raise UserError(
            f"--layers {text!r} is not a valid regular expression ({e}); fix the pattern, "
            "or escape ( ) [ ] . * + ? with a backslash to match them literally"
        ) from None


def check_prefix(prefix, given):
    """UserError unless the folder of PNG prefix `prefix` exists and is writable (checked before drawing)."""
    flag = f"--output {prefix!r}" + ("" if given else " (the default)")
    folder = os.path.dirname(os.path.abspath(prefix))
    if not os.path.isdir(folder):
        what = "is a file, not a folder" if os.path.exists(folder) else "does not exist"
        raise UserError(f"{flag}: folder {folder!r} {what}; create the folder or pick another prefix")
    if not os.access(folder, os.W_OK):
        raise UserError(f"{flag}: folder {folder!r} is not writable; pick a prefix in a folder you can write")
    return flag


PERCENTILES = 7  # stats.SIGMA_PERCENTILES: one value per sigma band edge
JSON_TYPES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


def json_type(value):
    """What a parsed JSON value is, in JSON's words ("an object", "null", ...)."""
    return JSON_TYPES.get(type(value), "null")


def check_history(history, path):
    """UserError unless `history` (the parsed log.json) has the shape training writes: a list of records
    (dicts); where a record has "stats", its "iteration" is a number and its "stats" maps each parameter
    name to {"data": summary, "grad": summary or null}, a summary holding 7 numeric "percentiles"."""

    def number(v):
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    def summary(v):
        p = v.get("percentiles") if isinstance(v, dict) else None
        return isinstance(p, list) and len(p) == PERCENTILES and all(number(x) for x in p)

    def problem():
        if not isinstance(history, list):
            return f"it holds {json_type(history)}, not an array of records"
        for i, r in enumerate(history):
            if not isinstance(r, dict):
                return f"record {i} is {json_type(r)}, not an object"
            stats = r.get("stats")
            if not stats:
                continue
            if not number(r.get("iteration")):
                return f"record {i} has stats but no numeric iteration"
            if not isinstance(stats, dict):
                return f'record {i}: "stats" is {json_type(stats)}, not an object of parameters'
            for name, s in stats.items():
                if not (
                    isinstance(s, dict) and summary(s.get("data")) and (s.get("grad") is None or summary(s["grad"]))
                ):
                    return (
                        f'record {i}: "stats" of {name!r} is not {{"data": ..., "grad": ...}} with '
                        f"{PERCENTILES} percentiles each"
                    )
        return None

    found = problem()
    if found:
        raise UserError(
            f"{path!r} is not a training log.json ({found}); pass the log.json of a run trained with --stats"
        )


def check_layers(history, path, pattern):
    """UserError unless the log holds weight and gradient statistics of a parameter that --layers matches."""
    recorded = recorded_parameters(history)
    if not recorded:
        raise UserError(f"{path!r} has no layer statistics; train with --stats")
    if not recorded_parameters(history, "data", pattern):
        shown = ", ".join(recorded[:NAMES_SHOWN]) + (
            f", ... ({len(recorded) - NAMES_SHOWN} more)" if len(recorded) > NAMES_SHOWN else ""
        )
        raise UserError(
            f"--layers {pattern.pattern!r} matched none of the {len(recorded)} recorded parameters "
            f"({shown}); pass a regex that matches part of one of these names, "
            "or leave out --layers for all"
        )
    if not recorded_parameters(history, "grad", pattern):
        raise UserError(
            f"--layers {pattern.pattern!r}: {path!r} records no gradient for the parameters it "
            "matches (they got none); pick parameters that are trained"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=cli.HelpFormatter)
    parser.add_argument("log", help="log.json of a run trained with --stats, or its --out folder")
    parser.add_argument(
        "--output",
        "-o",
        default="",
        help="PNG file prefix (default: <run folder>/stats): writes <prefix>_data.png and <prefix>_grad.png",
    )
    parser.add_argument("--layers", default="", help="Only parameters whose name matches this regex")
    args = parser.parse_args(argv)
    pattern = layer_pattern(args.layers)
    path = os.path.join(args.log, "log.json") if os.path.isdir(args.log) else args.log
    try:
        with open(path) as f:
            history = json.load(f)
    except (OSError, ValueError) as e:
        raise UserError(f"cannot read {path!r} ({e}); pass the log.json of a training run") from None
    prefix = args.output or os.path.join(os.path.dirname(path), "stats")
    flag = check_prefix(prefix, bool(args.output))
    check_history(history, path)
    check_layers(history, path, pattern)
    for which in ("data", "grad"):
        png = f"{prefix}_{which}.png"
        try:
            panels = plot_layer_stats(history, png, which, pattern)
        except OSError as e:  # what the folder check cannot foresee: a full disk, a folder named like the PNG
            raise UserError(f"{flag}: cannot write {png!r} ({e.strerror or e}); pick another prefix") from None
        print(f"wrote {png} ({panels} parameters)")


if __name__ == "__main__":
    cli.run(main)
