"""Train WaveNet on a folder written by preprocess.py."""
import argparse

from wavenet import WaveNet, cli
from wavenet.corpus import AudioChunks, train_val_split
from wavenet.errors import UserError
from wavenet.objectives import wavenet_nll
from wavenet.training import Task, Trainer, seed_everything


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description="WaveNet: train on a folder written by preprocess.py",
                                     formatter_class=cli.HelpFormatter)
    cli.add_training_flags(parser)
    parser.add_argument("--data", "-d", default="data/vctk", help="Input data directory (from preprocess.py)")
    parser.add_argument("--hidden_dim", type=cli.positive_int, default=32,
                        help="Number of hidden dimensions (residual channels)")
    parser.add_argument("--out_hidden_dim", type=cli.positive_int, default=32,
                        help="Number of hidden dimensions (skip channels and output layer)")
    parser.add_argument("--stacks_num", "-s", type=cli.positive_int, default=5, help="Number of stacks")
    parser.add_argument("--layers_num", "-l", type=cli.positive_int, default=10,
                        help="Number of layers per stack")
    parser.add_argument("--levels", type=cli.mu_law_levels, default=256,
                        help="Level number to quantisize values (must match the data)")
    parser.add_argument("--val_fraction", type=cli.fraction, default=0.05,
                        help="Share of the windows held out for validation, as whole recordings (every "
                             "speaker keeps one for training); with one recording, a share of its windows")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    device = cli.select_device(args.gpu)
    cli.writable_folder(args.out, "--out")
    chunks = AudioChunks(args.data, levels=args.levels)
    seed_everything(args.seed)
    speakers = len(chunks.speakers)
    model = WaveNet(args.levels, args.hidden_dim, args.out_hidden_dim, args.stacks_num, args.layers_num,
                    num_speakers=speakers if speakers > 1 else 0)
    R = model.receptive_field
    # the windows' targets follow the receptive field the data was cut for; a smaller model
    # ignores the extra context (the original's files record none: their chunks fit the model)
    context = chunks.receptive_field or R
    scored = chunks.chunk_length - context
    if scored <= 0 or context < R:
        # flags are not taken from a --resume snapshot: a resumed run may just lack its own
        fix = ("pass the --stacks_num and --layers_num of the run that wrote --resume, or rerun" if args.resume
               else "rerun")
        raise UserError(f"{args.data!r} was preprocessed for a receptive field of {chunks.receptive_field} "
                        f"samples (chunks of {chunks.chunk_length}), this model (--stacks_num {args.stacks_num} "
                        f"--layers_num {args.layers_num}) needs {R}; {fix} preprocess.py with --stacks_num "
                        f"{args.stacks_num} --layers_num {args.layers_num}")
    train_set, val_set = train_val_split(chunks, args.val_fraction, args.seed, groups=chunks.recording,
                                         speakers=chunks.speaker_ids)
    task = Task(name="wavenet", loss=wavenet_nll(scored, conditioned=model.num_speakers > 0), dims=1,
                meta={"rate": chunks.rate, "levels": args.levels, "speakers": chunks.speakers,
                      "receptive_field": R, "target_length": scored})
    Trainer(model, task, train_set, val_set, cli.settings_from_args(args), device, vars(args)).fit()


if __name__ == "__main__":
    cli.run(main)
