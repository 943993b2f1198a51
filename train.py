"""Train a class-conditional Gated PixelCNN on MNIST, Fashion-MNIST, CIFAR-10, scikit-learn's 8x8 digits or a
folder of one's own images."""

import argparse
import dataclasses

from wavenet import GatedPixelCNN, argtypes, cli, limits
from wavenet.distributed import environment
from wavenet.files import writable_folder
from wavenet.image_data import DATASETS, DEFAULT_DATA_DIR, FOLDER, FOLDER_IMAGE_SIZE, describe, load_images
from wavenet.image_folder import describe_folder
from wavenet.launch import train
from wavenet.models import GatedPixelCNNConfig
from wavenet.objectives import pixelcnn_nll
from wavenet.tensorboard_log import image_sample
from wavenet.training import Task, seed_everything


def build_parser():
    parser = argparse.ArgumentParser(description="PixelCNN: train a Gated PixelCNN", formatter_class=cli.HelpFormatter)
    cli.add_training_flags(
        parser,
        "GatedPixelCNN",
        clip_flags=("--gradclip", "--clip"),
        clip_help="Bound for gradient hard "
        "clipping (L2 norm of all gradients; 0: no clipping); --clip is the same flag",
    )
    parser.add_argument(
        "--hidden_dim", "-d", type=argtypes.positive_int, default=128, help="Number of hidden dimensions"
    )
    parser.add_argument(
        "--out_hidden_dim",
        type=argtypes.positive_int,
        default=16,
        help="Number of hidden dimensions of the output 1x1 layer",
    )
    parser.add_argument(
        "--blocks_num",
        "-n",
        type=argtypes.non_negative_int,
        default=15,
        help="Number of gated residual blocks after the first 7x7 block",
    )
    parser.add_argument("--levels", type=int, default=2, help="Level number to quantisize pixel values")
    parser.add_argument(
        "--dataset",
        default="mnist",
        help=f"Dataset for training: {', '.join(DATASETS)} (digits ships with scikit-learn), or {FOLDER}PATH: "
        "your own images, one subfolder of PATH per class (class-conditioned) or all in PATH (unconditioned)",
    )
    parser.add_argument(
        "--data_dir",
        default=DEFAULT_DATA_DIR,
        help="Folder where MNIST/Fashion-MNIST/CIFAR-10 are downloaded to or read from",
    )
    parser.add_argument(
        "--image_size",
        type=argtypes.positive_int,
        help=f"{FOLDER}PATH only: the side of the square its images are resized and centre-cropped to "
        f"(default {FOLDER_IMAGE_SIZE})",
    )
    return parser


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cli.architecture_from_resume(args, cli.given_flags(build_parser(), argv), "GatedPixelCNN")
    device = cli.select_device(args.gpu)
    spec = describe(args.dataset, args.image_size)
    C, H, W = spec.shape
    config = GatedPixelCNNConfig(
        C, args.hidden_dim, args.blocks_num, args.out_hidden_dim, args.levels, num_classes=spec.num_classes
    )
    limits.check_training_memory(config, args.batchsize, device, H, W)  # before anything is built or loaded
    writable_folder(args.out, "--out")
    train_set = load_images(args.dataset, args.data_dir, True, args.levels, args.image_size)
    test_set = load_images(args.dataset, args.data_dir, False, args.levels, args.image_size)
    if args.dataset.startswith(FOLDER) and environment().rank == 0:  # once per run, not per torchrun process
        print(describe_folder(args.dataset, spec.classes, train_set, test_set))
    seed_everything(args.seed)
    model = GatedPixelCNN(**dataclasses.asdict(config))
    meta = {"dataset": args.dataset, "levels": args.levels, "height": H, "width": W}
    task = Task(
        loss=pixelcnn_nll(args.levels, conditioned=spec.num_classes > 0),
        dims=C * H * W,
        meta=meta if spec.classes is None else {**meta, "classes": list(spec.classes)},
        sample=image_sample(H, W, args.levels),
    )
    train(model, task, train_set, test_set, cli.settings_from_args(args), device, vars(args))


if __name__ == "__main__":
    cli.run(main)
