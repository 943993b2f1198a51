"""Train WaveNet on a folder written by preprocess.py."""

import argparse
import dataclasses

from wavenet import WaveNet, argtypes, cli, limits
from wavenet.distributed import environment
from wavenet.errors import UserError
from wavenet.files import writable_folder
from wavenet.launch import train
from wavenet.models import WaveNetConfig
from wavenet.objectives import wavenet_nll
from wavenet.splits import describe_split, split_by_recording
from wavenet.tensorboard_log import SAMPLE_SECONDS, audio_sample
from wavenet.training import Task, seed_everything
from wavenet.windows import AudioWindows, WindowsDoNotFit

SPEAKERS_SHOWN = 5  # speaker names the start-up line lists; VCTK has 109


def build_parser():
    parser = argparse.ArgumentParser(
        description="WaveNet: train on a folder written by preprocess.py", formatter_class=cli.HelpFormatter
    )
    cli.add_training_flags(parser, "WaveNet")
    parser.add_argument("--data", "-d", default="data/vctk", help="Input data directory (from preprocess.py)")
    parser.add_argument(
        "--hidden_dim", type=argtypes.positive_int, default=32, help="Number of hidden dimensions (residual channels)"
    )
    parser.add_argument(
        "--out_hidden_dim",
        type=argtypes.positive_int,
        default=32,
        help="Number of hidden dimensions (skip channels and output layer)",
    )
    parser.add_argument("--stacks_num", "-s", type=argtypes.positive_int, default=5, help="Number of stacks")
    parser.add_argument("--layers_num", "-l", type=argtypes.positive_int, default=10, help="Number of layers per stack")
    parser.add_argument(
        "--levels",
        type=argtypes.mu_law_levels,
        default=256,
        help="Level number to quantisize values (must match the data)",
    )
    parser.add_argument(
        "--val_fraction",
        type=argtypes.fraction,
        default=0.05,
        help="Share of the windows held out for validation: whole recordings, and the end of one cut off "
        "at a window boundary to come close to the share (every speaker keeps training windows)",
    )
    parser.add_argument(
        "--no_local_conditioning",
        action="store_true",
        help="Ignore the log-mel features of a folder preprocessed with --mel: an unconditioned WaveNet "
        "(by default such a folder trains a locally conditioned one, a vocoder)",
    )
    return parser


def opening_frames(windows, val_set):
    """The frames a vocoder's --tensorboard clip resynthesises: the start of the first validation recording."""
    recording = windows.recording[val_set.indices[0]]
    return windows.opening_frames(recording, round(SAMPLE_SECONDS * windows.rate) // windows.mel["hop"] + 2)


def parse_args(argv=None):
    return build_parser().parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cli.architecture_from_resume(args, cli.given_flags(build_parser(), argv), "WaveNet")
    device = cli.select_device(args.gpu)
    writable_folder(args.out, "--out")
    windows = AudioWindows(args.data, levels=args.levels)
    seed_everything(args.seed)
    speakers = len(windows.speakers)
    mel = None if args.no_local_conditioning else windows.mel  # the folder's feature settings, or None
    config = WaveNetConfig(
        args.levels,
        args.hidden_dim,
        args.out_hidden_dim,
        args.stacks_num,
        args.layers_num,
        num_speakers=speakers if speakers > 1 else 0,
        cin_channels=mel["bands"] if mel else 0,
        hop_length=mel["hop"] if mel else 0,
    )
    limits.check_training_memory(config, args.batchsize, device)  # before the model is built
    model = WaveNet(**dataclasses.asdict(config))
    R = model.receptive_field
    try:
        scored = windows.target_length_for(R)
    except WindowsDoNotFit:
        raise UserError(
            f"{args.data!r} was preprocessed for a receptive field of {windows.receptive_field} "
            f"samples (chunks of {windows.chunk_length}), this model (--stacks_num {args.stacks_num} "
            f"--layers_num {args.layers_num}) needs {R}; rerun preprocess.py with --stacks_num "
            f"{args.stacks_num} --layers_num {args.layers_num}"
        ) from None
    train_set, val_set = split_by_recording(windows, args.val_fraction, args.seed)
    if environment().rank == 0:  # once per run, not once per torchrun process
        print(describe_split(train_set, val_set, windows, args.val_fraction, SPEAKERS_SHOWN))
        shown = SPEAKERS_SHOWN
        names = ", ".join(windows.speakers[:shown]) + (f", ... ({speakers - shown} more)" if speakers > shown else "")
        print(
            f"global conditioning on {speakers} speakers ({names})"
            if model.num_speakers
            else f"one speaker ({names}): no speaker conditioning"
        )
        if mel:
            hop = f"hop {mel['hop']} samples ({mel['hop'] / mel['rate'] * 1000:g} ms)"
            print(f"local conditioning on {mel['bands']} log-mel bands, {hop}")
        elif windows.mel:
            print("no local conditioning (--no_local_conditioning): the folder's log-mel features are ignored")
    task = Task(
        loss=wavenet_nll(scored, conditioned=model.num_speakers > 0, local=mel is not None),
        dims=1,
        meta={
            "rate": windows.rate,
            "levels": args.levels,
            "speakers": windows.speakers,
            "receptive_field": R,
            "target_length": scored,
            "features": mel,  # what infer_wavenet.py --mel computes frames with (None: unconditioned)
        },
        sample=audio_sample(windows.rate, opening_frames(windows, val_set) if mel else None),
    )
    train(model, task, train_set, val_set, cli.settings_from_args(args), device, vars(args))


if __name__ == "__main__":
    cli.run(main)
