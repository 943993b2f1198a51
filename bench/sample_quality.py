"""Sample quality of a class-conditional Gated PixelCNN: do its samples show the digit they were asked for?

    python bench/sample_quality.py -m /path/to/run --data_dir ../shared/data     # MNIST: 20 samples per label
    python bench/sample_quality.py -m assets/models/<digits snapshot> -k 50        # the 8x8 digits

Fits a small CNN on the real training images of the snapshot's data set, quantised to the snapshot's
levels (what the samples look like), and reports its accuracy on the real test images for reference.
Then draws k samples per label and reports, per label and overall, the fraction the classifier assigns
to the label they were drawn for, beside the snapshot's test bits/dim. A model that ignores its label
scores about 10%. The classifier is fitted on the CPU from a fixed seed whatever --gpu says, so one
classifier judges every snapshot of a data set and levels. The target for the shipped MNIST model:
at least 90% overall and 75% for every label; it is judged (met or NOT met) for MNIST snapshots only.
"""

import argparse
import dataclasses
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from wavenet import argtypes, checkpoint, cli, estimates, files, limits  # noqa: E402
from wavenet.errors import UserError  # noqa: E402
from wavenet.image_data import DEFAULT_DATA_DIR, load_images  # noqa: E402
from wavenet.pixelcnn_sampling import sample_images  # noqa: E402
from wavenet.sample_quality import (  # noqa: E402
    FittedClassifier,
    classify,
    dataset_bits_per_dim,
    fit_classifier,
    label_counts,
)

DIGIT_DATASETS = ("mnist", "digits")  # the data sets whose classes are digits a classifier can check
TARGET_OVERALL, TARGET_LABEL = 0.90, 0.75  # issue 14's target for the shipped MNIST model
TARGET_DATASET = "mnist"  # the only data set the target is set for: other snapshots are not judged
CLASSIFIER_SEED = 0  # fixed, so every snapshot of a data set and levels is judged by the same classifier


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_sampling_flags(parser, "GatedPixelCNN")
    parser.add_argument(
        "-k", "--samples", type=argtypes.positive_int, default=20, help="Samples drawn per label (default: 20)"
    )
    parser.add_argument(
        "--seed",
        type=argtypes.seed,
        default=0,
        help=f"Random seed of the samples, 0..{argtypes.SEED_MAX} (default: 0); the classifier's is fixed",
    )
    parser.add_argument(
        "--data_dir",
        help="Folder that holds MNIST/raw (as train.py's --data_dir; default: the one the snapshot's run used, "
        f"else {DEFAULT_DATA_DIR!r}); the digits need none",
    )
    parser.add_argument(
        "--bpd_images",
        type=argtypes.non_negative_int,
        default=0,
        help="Test images the bits/dim is measured on, the first ones (default: 0, all of them)",
    )
    parser.add_argument(
        "--classifier_cache",
        help="File to keep the fitted classifier in: read if it exists (for the same data set and levels), "
        "written otherwise; keep it outside the repository (default: fit it every time)",
    )
    parser.add_argument(
        "--json",
        help="Also write the results to this JSON file (its target_met: null for a snapshot of another data set "
        "than MNIST)",
    )
    parser.add_argument(
        "--output", "-o", help="Also write the scored samples as a grid picture, row r drawn for label r (.png, .jpg)"
    )
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    path, snapshot, model = load_model(args.model)
    meta = snapshot["meta"]
    dataset, levels, classes = meta["dataset"], model.levels, model.num_classes
    check_outputs(args)
    device = cli.select_device(args.gpu)
    H, W = meta["height"], meta["width"]
    count = classes * args.samples
    limits.check_memory(
        estimates.pixelcnn_sampling_bytes(model.config, count, H, W),
        f"-k {args.samples} ({estimates.format_count(count)} images of {H}x{W})",
        "pass a smaller -k",
        device,
    )
    data_dir = checkpoint.data_dir(snapshot, args.data_dir)
    train_set = load_images(dataset, data_dir, True, levels)
    test_set = load_images(dataset, data_dir, False, levels)
    classifier = fitted_classifier(args.classifier_cache, dataset, levels, classes, train_set, test_set)
    model.to(device)
    bpd, bpd_images = dataset_bits_per_dim(model, test_set, device, args.bpd_images or None)

    labels = torch.arange(classes).repeat_interleave(args.samples)  # k samples of label 0, then of 1, ...
    start = time.perf_counter()
    samples = sample_images(
        model, count, H, W, label=labels.to(device), generator=torch.Generator(device).manual_seed(args.seed)
    )
    sampling_seconds = time.perf_counter() - start
    predicted = classify(classifier.model, samples.cpu(), levels)

    results = summarise(path, meta, model, args, labels, predicted, classifier, bpd, bpd_images, sampling_seconds)
    results["device"] = str(device)
    print_table(results)
    if args.output:
        from wavenet.image_grid import save_grid

        save_grid(samples, levels, args.samples, args.output)
        print(f"wrote the samples to {args.output} (row r: label r)")
    if args.json:
        text = (json.dumps(results, indent=1) + "\n").encode()
        files.atomic_write(args.json, lambda f: f.write(text))
        print(f"wrote {args.json}")


def load_model(given):
    """(path, snapshot, model) of -m: a class-conditional GatedPixelCNN of a digit data set, else UserError."""
    path = cli.resolve_model(given, "GatedPixelCNN")
    snapshot = checkpoint.load(path)
    model = checkpoint.build_model(snapshot, "GatedPixelCNN", path)
    dataset = snapshot.get("meta", {}).get("dataset")
    if dataset not in DIGIT_DATASETS:
        raise UserError(
            f"{path!r} was trained on {dataset!r}; the quality check knows digit classes only "
            f"({', '.join(DIGIT_DATASETS)})"
        )
    if model.num_classes == 0:
        raise UserError(f"{path!r} is an unconditional model: it has no label whose samples could be checked")
    return path, snapshot, model


def check_outputs(args):
    """UserError for a file of -o, --json or --classifier_cache that could not be written: checked before the
    minutes of fitting and sampling, at whose end they are written."""
    if args.output:
        from wavenet.image_grid import check_output  # here: it loads torchvision, seconds that only a grid needs

        check_output(args.output)
    if args.json:
        files.check_output_file(args.json, "--json", "results.json")
    if args.classifier_cache:  # one that exists is read, so only a folder or a missing folder is wrong
        files.check_output_file(args.classifier_cache, "--classifier_cache", "classifier.pt")


def fitted_classifier(cache, dataset, levels, classes, train_set, test_set):
    """The classifier for `dataset` at `levels`: read from `cache` when it holds that one, else fitted (and
    written to `cache` if given)."""
    key = {"dataset": dataset, "levels": levels, "classes": classes}
    if cache and os.path.exists(cache):
        try:
            state = torch.load(cache, map_location="cpu", weights_only=True)
            held = {name: state[name] for name in key}
        except Exception as e:  # a torn or foreign file can fail anywhere inside the unpickler
            raise UserError(
                f"--classifier_cache {cache!r} is not a classifier file ({type(e).__name__}); delete it"
            ) from None
        if held != key:
            raise UserError(
                f"--classifier_cache {cache!r} holds the classifier of {held['dataset']} at {held['levels']} "
                f"levels, this snapshot needs {dataset} at {levels}; pass another path or delete it"
            )
        return FittedClassifier.from_state(state["classifier"])
    train_q, train_labels = train_set.tensors
    test_q, test_labels = test_set.tensors
    print(f"fitting the classifier on {len(train_labels):,} real training images at {levels} levels ...")
    classifier = fit_classifier(train_q, train_labels, test_q, test_labels, levels, classes, CLASSIFIER_SEED)
    if cache:
        state = {**key, "classifier": classifier.state()}
        files.atomic_write(cache, lambda f: torch.save(state, f))
    return classifier


def summarise(path, meta, model, args, labels, predicted, classifier, bpd, bpd_images, sampling_seconds):
    """The results as plain values: what the table prints and --json writes."""
    correct = int((predicted == labels).sum())
    rows = [
        {
            "label": label,
            "samples": n,
            "classified_as_label": hits,
            "fraction": hits / max(n, 1),
            "real_test_fraction": classifier.test_per_label[label],
            "classified_as": torch.bincount(predicted[labels == label], minlength=model.num_classes).tolist(),
        }
        for label, (n, hits) in enumerate(label_counts(predicted, labels, model.num_classes))
    ]
    overall = correct / len(labels)
    return {
        "snapshot": path,
        "dataset": meta["dataset"],
        "levels": model.levels,
        "image_shape": [model.in_channels, meta["height"], meta["width"]],
        "config": dataclasses.asdict(model.config),
        "samples_per_label": args.samples,
        "seed": args.seed,
        "labels": rows,
        "overall": {"samples": len(labels), "classified_as_label": correct, "fraction": overall},
        "target_met": target_met(meta["dataset"], overall, rows),
        "test_bits_per_dim": bpd,
        "bits_per_dim_images": bpd_images,
        "classifier": {
            "kind": "2-layer strided CNN (wavenet.sample_quality.DigitClassifier)",
            "train_images": classifier.train_images,
            "test_images": classifier.test_images,
            "test_accuracy": classifier.test_accuracy,
            "fit_seconds": classifier.fit_seconds,
        },
        "sampling_seconds": sampling_seconds,
    }


def target_met(dataset, overall, rows):
    """Whether the scores meet the target: True or False for an MNIST snapshot, None for another data set's
    (the target is set for MNIST only; the 8x8 digits, say, have none)."""
    if dataset != TARGET_DATASET:
        return None
    return overall >= TARGET_OVERALL and min(row["fraction"] for row in rows) >= TARGET_LABEL


def print_table(r):
    C, H, W = r["image_shape"]
    c, clf, overall = r["config"], r["classifier"], r["overall"]
    fit = f"fitted in {clf['fit_seconds']:.1f} s" if clf["fit_seconds"] else "read from --classifier_cache"
    print(
        f"snapshot: {r['snapshot']} ({r['dataset']}, {H}x{W}x{C}, {r['levels']} levels; -d {c['hidden_dim']} "
        f"-n {c['blocks_num']} --out_hidden_dim {c['out_hidden_dim']})"
    )
    print(f"test bits/dim: {r['test_bits_per_dim']:.4f} ({r['bits_per_dim_images']:,} real test images)")
    print(
        f"classifier: {clf['test_accuracy']:.1%} of {clf['test_images']:,} real test images right "
        f"(trained on {clf['train_images']:,} at {r['levels']} levels, {fit})"
    )
    print(
        f"sampling: {overall['samples']:,} images ({r['samples_per_label']} per label, --seed {r['seed']}) "
        f"in {r['sampling_seconds']:.1f} s on {r['device']}"
    )
    print(f"{'label':<8} {'samples':>7}  {'classified as label':>19}  {'real test images':>16}")
    for row in r["labels"]:
        share = f"{row['classified_as_label']} ({row['fraction']:.1%})"
        print(f"{row['label']:<8} {row['samples']:>7}  {share:>19}  {row['real_test_fraction']:>16.1%}")
    share = f"{overall['classified_as_label']} ({overall['fraction']:.1%})"
    print(f"{'overall':<8} {overall['samples']:>7}  {share:>19}  {clf['test_accuracy']:>16.1%}")
    target = f"target (>= {TARGET_OVERALL:.0%} overall, every label >= {TARGET_LABEL:.0%})"
    if r["target_met"] is None:
        print(f"{target}: applies to MNIST models only, not judged for {r['dataset']}")
    else:
        print(f"{target}: {'met' if r['target_met'] else 'NOT met'}")


if __name__ == "__main__":
    cli.run(main)
