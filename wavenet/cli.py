"""What every command-line script shares: one-line errors, device choice and the flags both trainers take."""

import argparse
import dataclasses
import os
import signal
import sys
import threading

import torch

from . import argtypes, checkpoint
from .distributed import environment
from .errors import UserError
from .files import removing_empty_on_failure
from .launch import Settings
from .registry import KINDS, TRAINER_SNAPSHOT
from .tensorboard_log import SAMPLE_HELP

DEFAULTS = Settings()  # the training flags' defaults


class Terminated(BaseException):
    """SIGTERM arrived outside the training loop: raised where the program was, like KeyboardInterrupt."""


def _raise_terminated(_signum, _frame):
    raise Terminated


def run(main):
    """Call main(); a UserError becomes `error: <message>` on stderr and exit status 2, no traceback.

    Ctrl-C becomes `interrupted` and status 130, SIGTERM `terminated` and status 143 (files are
    written atomically, so none is left torn); inside the training loop both snapshot first
    (training.Trainer.fit installs its own handler for the loop) and end in an errors.Stopped, whose
    line says how to go on, with the same status. Either way, output folders this run
    created and left empty are removed.
    """
    # signal handlers can only be set from the main thread (a test may call run from another)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if main_thread else None
    try:
        with removing_empty_on_failure():
            main()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.status)
    except KeyboardInterrupt:  # Ctrl-C outside the training loop (which snapshots first)
        print("interrupted", file=sys.stderr)
        sys.exit(130)  # the shell's status for SIGINT
    except Terminated:
        print("terminated", file=sys.stderr)
        sys.exit(128 + signal.SIGTERM)  # 143, the shell's status for SIGTERM
    finally:
        if previous is not None:  # None: not on the main thread, or a handler set outside Python
            signal.signal(signal.SIGTERM, previous)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows the default of every flag that has one."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == "":
            return action.help
        return super()._get_help_string(action)


def select_device(gpu):
    """--gpu N: cuda:N for N >= 0, the CPU for a negative N; UserError if that GPU is absent.

    Under torchrun each process takes the GPU of its LOCAL_RANK instead of N.
    """
    if gpu < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise UserError(f"--gpu {gpu}: no CUDA GPU is available here; pass --gpu -1 to run on the CPU")
    local_rank = environment().local_rank
    index = gpu if local_rank is None else local_rank
    if index >= torch.cuda.device_count():
        raise UserError(
            f"--gpu {index}: only {torch.cuda.device_count()} CUDA GPU(s) here "
            f"(0..{torch.cuda.device_count() - 1}); pass a valid id or --gpu -1 for the CPU"
        )
    torch.cuda.set_device(index)
    return torch.device("cuda", index)


def resolve_model(path, model_type):
    """--model as a snapshot path: for a folder its newest model snapshot of `model_type`, printed so the
    user sees which."""
    found = checkpoint.resolve(path, KINDS[model_type].prefix)
    if os.path.isdir(path):
        print(f"using {found} (newest in {os.path.join(path, '')})")
    return found


def given_flags(parser, argv=None):
    """The dests of the flags given on the command line `argv`, as opposed to those left at their defaults."""
    unset = object()
    # argparse fills in a default only where the namespace lacks the attribute
    namespace = argparse.Namespace(**{action.dest: unset for action in parser._actions})
    parser.parse_args(argv, namespace)
    return {dest for dest, value in vars(namespace).items() if value is not unset}


def architecture_from_resume(args, given, model_type):
    """With --resume, take the architecture flags left out from the trainer snapshot's config, as the infer
    scripts do; a given flag that contradicts the snapshot is a UserError (checkpoint.check_flags).

    given: the flags on the command line (given_flags). A missing snapshot, or one of the other model,
    is left to the resume itself, which reports it with the fix.
    """
    path = checkpoint.resolve(args.resume, TRAINER_SNAPSHOT) if args.resume else ""
    if not os.path.isfile(path):
        return
    snapshot = checkpoint.load(path)
    if snapshot["model_type"] != model_type:
        return
    names = [name for name in snapshot["config"] if hasattr(args, name)]  # those that are flags
    checkpoint.check_flags(snapshot, {name: getattr(args, name) for name in names if name in given}, path)
    for name in names:
        setattr(args, name, snapshot["config"][name])


def add_sampling_flags(parser, model_type):
    """--gpu and --model, the flags both sampling scripts open with; model_type: a registry.KINDS key."""
    prefix = KINDS[model_type].prefix
    parser.add_argument("--gpu", "-g", type=int, default=-1, help="GPU ID (negative value indicates CPU)")
    parser.add_argument(
        "--model",
        "-m",
        required=True,
        help=f"Path to model for generation: {prefix}<N>, snapshot_iter_<N>, "
        f"or a training --out folder (its newest {prefix}<N>)",
    )


def add_training_flags(
    parser, model_type, clip_flags=("--clip",), clip_help="L2 norm gradient clipping (0: no clipping)"
):
    """The flags both trainers share, with the original's names, short forms and defaults; model_type: the
    registry.KINDS key of the model trained (its snapshots' names and epoch-end sample, in the help)."""
    prefix = KINDS[model_type].prefix
    parser.add_argument(
        "--batchsize",
        "-b",
        type=argtypes.positive_int,
        default=DEFAULTS.batchsize,
        help="Number of examples in each mini-batch (per process under torchrun)",
    )
    parser.add_argument(
        "--epoch",
        "-e",
        type=argtypes.positive_int,
        default=DEFAULTS.epoch,
        help="Number of sweeps over the dataset to train",
    )
    parser.add_argument(
        "--gpu",
        "-g",
        type=int,
        default=-1,
        help="GPU ID (negative value indicates CPU); under torchrun any GPU ID gives "
        "each process the GPU of its LOCAL_RANK",
    )
    parser.add_argument(
        "--resume",
        "-r",
        default=DEFAULTS.resume,
        help="Resume the training from snapshot (a snapshot_iter_<N> file or its folder)",
    )
    parser.add_argument("--out", "-o", default=DEFAULTS.out, help="Output directory")
    parser.add_argument(
        *clip_flags,
        dest="clip",
        type=argtypes.non_negative_float,
        default=DEFAULTS.clip,
        help=clip_help,
        metavar=clip_flags[0].lstrip("-").upper(),
    )  # not CLIP (the dest) for --gradclip
    parser.add_argument(
        "--learning_rate", type=argtypes.positive_float, default=DEFAULTS.learning_rate, help="Learning rate (Adam)"
    )
    parser.add_argument(
        "--weight_decay",
        type=argtypes.non_negative_float,
        default=DEFAULTS.weight_decay,
        help="Weight decay rate (L2 regularization)",
    )
    # the original's train.py took a value (--stats STATS), its train_wavenet.py none: both work
    parser.add_argument(
        "--stats",
        nargs="?",
        const=True,
        default=DEFAULTS.stats,
        type=argtypes.yes_no,
        help="Collect layerwise statistics of weights and gradients into log.json "
        "(--stats alone or --stats 1/true/yes/on: on; --stats 0/false/no/off: off)",
    )
    parser.add_argument(
        "--snapshot_every",
        type=argtypes.non_negative_int,
        default=DEFAULTS.snapshot_every,
        help="Iterations between trainer snapshots, besides the one at every epoch end (0: only those)",
    )
    parser.add_argument(
        "--log_every",
        type=argtypes.non_negative_int,
        default=DEFAULTS.log_every,
        help="Iterations between extra log records (0: once per epoch)",
    )
    parser.add_argument(
        "--seed",
        type=argtypes.seed,
        default=DEFAULTS.seed,
        help=f"Random seed, 0..{argtypes.SEED_MAX} (initialisation and data order)",
    )
    parser.add_argument(
        "--workers",
        type=argtypes.non_negative_int,
        default=DEFAULTS.workers,
        help="DataLoader worker processes (0: load in the main process)",
    )
    parser.add_argument("--amp", action="store_true", default=DEFAULTS.amp, help="Mixed precision: bfloat16 autocast")
    parser.add_argument(
        "--amp_dtype",
        choices=("bfloat16", "float16"),
        default=DEFAULTS.amp_dtype,
        help="The type --amp computes in: float16 scales the loss (torch.amp.GradScaler) so small gradients do "
        "not underflow; for GPUs without bfloat16, such as the T4 or V100",
    )
    parser.add_argument(
        "--compile", action="store_true", default=DEFAULTS.compile, help="Compile the model with torch.compile"
    )
    parser.add_argument(
        "--keep",
        type=argtypes.non_negative_int,
        default=DEFAULTS.keep,
        metavar="N",
        help=f"Keep only the N newest model snapshots {prefix}<N>: one is written only when the validation nll "
        "improves, so these are the N best (0: keep all, as the original)",
    )
    parser.add_argument(
        "--tensorboard",
        action="store_true",
        default=DEFAULTS.tensorboard,
        help="Write TensorBoard events into --out (view them with tensorboard --logdir OUT): each step's bits/dim, "
        "gradient norm before clipping and learning rate, each epoch's nll and bits/dim, with --stats "
        f"histograms of weights and gradients, and at each epoch's end {SAMPLE_HELP[model_type]}",
    )


def settings_from_args(args):
    """The training loop's Settings from parsed flags (add_training_flags names each flag after its field)."""
    return Settings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)})
