"""Generate audio from a trained WaveNet snapshot, one cached step per sample."""

import argparse
import os
import re

import torch

from wavenet import argtypes, checkpoint, cli, estimates, limits
from wavenet.audio import load_audio, mu_law_decode, mu_law_encode, printable, write_wav
from wavenet.errors import UserError
from wavenet.features import read_feature_file
from wavenet.files import writable_folder
from wavenet.plots import plot_audio
from wavenet.wavenet_sampling import estimated_seconds, generate, samples_for

DEFAULT_LENGTH = 4096
DEFAULT_COUNT = 10


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="WaveNet: generate audio. The architecture comes from the snapshot; the architecture "
        "flags are only checked against it.",
        formatter_class=cli.HelpFormatter,
    )
    cli.add_sampling_flags(parser, "WaveNet")
    parser.add_argument("--hidden_dim", type=argtypes.positive_int, help="Number of hidden dimensions")
    parser.add_argument("--out_hidden_dim", type=argtypes.positive_int, help="Number of hidden dimensions")
    parser.add_argument("--stacks_num", "-s", type=argtypes.positive_int, help="Number of stacks")
    parser.add_argument("--layers_num", "-l", type=argtypes.positive_int, help="Number of layers per stack")
    parser.add_argument("--levels", type=argtypes.positive_int, help="Level number to quantisize values")
    parser.add_argument("--output", "-o", default="samples", help="Output sample directory")
    parser.add_argument("--label", help="Speaker to generate: an index or a name such as p225")
    parser.add_argument(
        "--count",
        "-c",
        type=argtypes.positive_int,
        help=f"Number of samples to generate (default: {DEFAULT_COUNT}; with --mel, 1)",
    )
    parser.add_argument("--rate", type=argtypes.positive_int, help="Sample rate in Hz (must match the snapshot)")
    parser.add_argument(
        "--length",
        type=argtypes.positive_int,
        help=f"Output sample length (default: {DEFAULT_LENGTH}; with --mel, what its frames cover)",
    )
    parser.add_argument(
        "--mel",
        metavar="FILE",
        help="Local conditioning for a model trained on log-mel features: a .wav/.flac recording to "
        "resynthesise (its features computed as preprocess.py did), or a .npy file of log-mel frames "
        "(frames, bands) float32 or float64 as wavenet.features.log_mel computes them; the output covers the frames",
    )
    parser.add_argument(
        "--mel_resample",
        action="store_true",
        help="Resample a --mel recording at another rate to the model's, as preprocess.py resamples",
    )
    parser.add_argument(
        "--seed",
        type=argtypes.seed,
        default=0,
        help=f"Random seed, 0..{argtypes.SEED_MAX}: the same seed gives the same audio",
    )
    parser.add_argument(
        "--temperature",
        type=argtypes.temperature,
        default=1.0,
        help="Softmax temperature, a finite number >= 0; below 1 is more conservative, 0 always picks the likeliest",
    )
    parser.add_argument("--prime", help="Start every sample from this recording (wav/flac)")
    parser.add_argument(
        "--method",
        choices=("auto", "numba", "torch", "naive"),
        default="auto",
        help="auto: the fastest exact path here; naive: the original's full recomputation",
    )
    parser.add_argument(
        "--plot", action="store_true", help="Also write sample_<i>.png with the waveform and spectrogram"
    )
    return parser.parse_args(argv)


def speaker_index(label, speakers, model):
    """--label as a speaker index (None for an unconditioned model)."""
    names = speakers or []
    if model.num_speakers == 0:
        if label not in (None, "0", *names):
            raise UserError(
                f"--label {label}: this model was trained on one speaker ({', '.join(names) or 0}); drop --label"
            )
        return None
    if label is None:
        return 0
    if label in names:
        return names.index(label)
    if argtypes.is_integer(label) and 0 <= int(label) < model.num_speakers:
        return int(label)
    raise UserError(
        f"--label {label} is not a speaker of this model: use 0..{model.num_speakers - 1} or one of {', '.join(names)}"
    )


def local_conditioning(args, model, meta):
    """--mel as (normalised frames (bands, F) tensor, lead-in codes (P,)) and the output length, or Nones
    and --length for a model without local conditioning; UserError where --mel and the model disagree."""
    if not model.cin_channels:
        if args.mel:
            raise UserError(f"--mel {args.mel}: {args.model!r} has no local conditioning; drop --mel")
        return None, None, args.length or DEFAULT_LENGTH
    if not args.mel:
        raise UserError(
            f"{args.model!r} is conditioned on {model.cin_channels} log-mel bands: pass --mel with a "
            ".wav/.flac recording to resynthesise or a .npy file of frames"
        )
    for flag in ("length", "prime"):
        if getattr(args, flag) is not None:
            raise UserError(f"--{flag}: with --mel the frames set what is generated; drop --{flag}")
    frames, lead_in, samples = read_feature_file(args.mel, meta["features"], args.mel_resample)
    # a recording: its own length (the frames cover up to a hop more); frames: all they cover
    length = samples if samples is not None else samples_for(model, frames.shape[1])
    # the lead-in is silence, as preprocess put before each recording: the frames cover it, and the
    # samples continue it
    return torch.from_numpy(frames), torch.full((lead_in,), model.silence), length


def check_request(model, args, device):
    """UserError for a --count x --length that cannot fit in memory or would take more than limits.MAX_SECONDS."""
    what = f"--count {args.count} x --length {estimates.format_count(args.length)}"
    fix = "ask for fewer (--count) or shorter (--length) samples"
    for where in {device, torch.device("cpu")}:  # the codes are made on `device`, then written from the CPU
        limits.check_memory(estimates.generation_bytes(args.count, args.length), f"{what} (int64 codes)", fix, where)
    seconds = estimated_seconds(model, args.count, args.length, args.method)
    limits.check_duration(seconds, f"{what} with --method {args.method}", fix)


def main(argv=None):
    args = parse_args(argv)
    args.model = cli.resolve_model(args.model, "WaveNet")
    snapshot = checkpoint.load(args.model)
    model = checkpoint.build_model(snapshot, "WaveNet", args.model)
    meta = snapshot["meta"]
    checkpoint.check_flags(
        snapshot,
        {
            "hidden_dim": args.hidden_dim,
            "out_hidden_dim": args.out_hidden_dim,
            "stacks_num": args.stacks_num,
            "layers_num": args.layers_num,
            "levels": args.levels,
            "rate": args.rate,
        },
        args.model,
    )
    rate = meta["rate"] or args.rate
    if rate is None:
        raise UserError(
            f"{args.model!r} does not record its sample rate (data from the original preprocess.py); pass --rate"
        )
    speaker = speaker_index(args.label, meta.get("speakers"), model)
    features, prime, args.length = local_conditioning(args, model, meta)
    args.count = args.count or (1 if features is not None else DEFAULT_COUNT)
    if args.prime:
        prime = torch.from_numpy(mu_law_encode(load_audio(args.prime, rate), model.levels)).long()
    device = cli.select_device(args.gpu)
    check_request(model, args, device)
    writable_folder(args.output, "--output")
    codes = generate(
        model.to(device),
        args.count,
        args.length,
        speaker=None if speaker is None else torch.full((args.count,), speaker, device=device),
        prime=None if prime is None else prime.to(device),
        temperature=args.temperature,
        generator=torch.Generator(device).manual_seed(args.seed),
        method=args.method,
        features=None if features is None else features.to(device),
    )
    for i, sample in enumerate(codes.cpu().numpy()):
        path = os.path.join(args.output, f"sample_{i}.wav")
        audio = mu_law_decode(sample, model.levels)
        write_wav(path, audio, rate)
        if args.plot:
            plot_audio(audio, rate, path[:-4] + ".png")
        elif os.path.exists(path[:-4] + ".png"):
            os.remove(path[:-4] + ".png")  # the plot of the wav just replaced
    files = "wav file" if args.count == 1 else "wav files"
    of = "" if speaker is None else f", speaker {meta['speakers'][speaker]}"
    if features is not None:
        of += f", conditioned on the {features.shape[1]} log-mel frames of {printable(args.mel)}"
    print(
        f"wrote {args.count} {files} of {args.length:,} samples ({args.length / rate:.2f} s at {rate} Hz{of}) "
        f"to {args.output}/"
    )
    older = sorted(
        int(m.group(1))
        for n in os.listdir(args.output)
        if (m := re.fullmatch(r"sample_(\d+)\.wav", n)) and int(m.group(1)) >= args.count
    )
    if older:
        print(
            f"note: {args.output}/ also holds {len(older)} sample(s) of an earlier run (sample_{older[0]}.wav, "
            "...), left as they were"
        )


if __name__ == "__main__":
    cli.run(main)
