"""Cut a folder of speech recordings into chunks of mu-law codes for train_wavenet.py.

    python preprocess.py --data VCTK-Corpus/wav48 --output data/vctk --rate 16000 --stacks_num 5 --layers_num 10
    python preprocess.py --data LibriSpeech/train-clean-100 --speaker_level 1 --output data/libri

Each chunk is receptive_field(stacks_num, layers_num) + target_length samples long, so that every
target sample sees a full receptive field of real audio.
"""

import argparse
import os

from wavenet import argtypes, cli, corpus, features, receptive_field
from wavenet.audio import printable
from wavenet.errors import UserError
from wavenet.files import writable_folder
from wavenet.preprocessing import preprocess
from wavenet.windows import WindowGeometry


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="WaveNet data preprocessing: audio files -> vctk_* chunk files", formatter_class=cli.HelpFormatter
    )
    parser.add_argument(
        "--data",
        required=True,
        help="Folder searched recursively for .wav and .flac files; a speaker is the name "
        "of a file's folder (VCTK: wav48/p225/p225_001.wav) unless --speaker_level says otherwise",
    )
    parser.add_argument(
        "--speaker_level",
        type=argtypes.non_negative_int,
        default=None,
        help="Take each file's speaker from the folder this many levels below --data, named by its path "
        "from --data (LibriSpeech speaker/chapter/file.flac: 1 = speaker, 2 = chapter); 0: one speaker "
        "for all files. Default: the name of the folder holding each file",
    )
    parser.add_argument(
        "--output", default=os.path.join("data", "vctk"), help="Folder for the vctk_* files (created if missing)"
    )
    parser.add_argument(
        "--workers",
        type=argtypes.positive_int,
        default=os.cpu_count() or 1,
        help="Processes decoding and resampling files",
    )
    parser.add_argument(
        "--rate", type=argtypes.positive_int, default=16000, help="Sample rate to resample to (Hz, 1000..384000)"
    )
    parser.add_argument(
        "--stacks_num",
        "-s",
        type=argtypes.positive_int,
        default=5,
        help="Number of stacks of the WaveNet to train (sets the receptive field)",
    )
    parser.add_argument(
        "--layers_num",
        "-l",
        type=argtypes.positive_int,
        default=10,
        help="Number of layers per stack of the WaveNet to train (sets the receptive field)",
    )
    parser.add_argument(
        "--target_length",
        type=argtypes.positive_int,
        default=1600,
        help="Predicted samples per chunk, after its receptive field",
    )
    parser.add_argument(
        "--flush_every", type=argtypes.positive_int, default=100, help="Chunks buffered in memory between writes"
    )
    parser.add_argument(
        "--levels",
        type=argtypes.mu_law_levels,
        default=256,
        help="Number of mu-law levels (2..256; one byte per sample)",
    )
    parser.add_argument(
        "--mel",
        type=argtypes.non_negative_int,
        default=0,
        metavar="N",
        help="Also store N log-mel bands per frame (80 is usual) for a locally conditioned WaveNet, a vocoder; 0: none",
    )
    parser.add_argument(
        "--mel_hop",
        type=argtypes.samples_or_ms,
        help=f"Between log-mel frames: samples, or milliseconds such as 10ms (default: "
        f"{features.HOP_SECONDS * 1000:g}ms); --target_length is rounded up to a whole number of hops",
    )
    parser.add_argument(
        "--mel_window",
        type=argtypes.samples_or_ms,
        help=f"Each frame's analysis window: samples, or milliseconds (default: {features.WINDOW_HOPS} hops)",
    )
    args = parser.parse_args(argv)

    writable_folder(args.output, "--output")
    mel = None
    if args.mel:
        mel = features.MelSettings.for_rate(args.rate, args.mel, args.mel_hop, args.mel_window)
        if args.target_length % mel.hop:
            rounded = -(-args.target_length // mel.hop) * mel.hop
            print(
                f"--target_length {args.target_length} rounded up to {rounded}: {rounded // mel.hop} hops of {mel.hop}"
            )
            args.target_length = rounded
    elif args.mel_hop or args.mel_window:
        raise UserError("--mel_hop and --mel_window set the log-mel frames: pass --mel N too")
    geometry = WindowGeometry(receptive_field(args.stacks_num, args.layers_num), args.target_length)
    summary = preprocess(
        args.data,
        args.output,
        args.rate,
        geometry.length,
        workers=args.workers,
        flush_every=args.flush_every,
        levels=args.levels,
        receptive_field=geometry.receptive_field,
        speaker_level=args.speaker_level,
        mel=mel,
    )
    print(summary.format_summary())
    print(summary.format_speakers())
    saved = [corpus.CODES_FILE, corpus.SPEAKERS_FILE, corpus.RECORDINGS_FILE, corpus.META_FILE]
    if mel:
        print(
            f"log-mel features: {mel.bands} bands, hop {mel.hop} samples ({mel.hop / mel.rate * 1000:g} ms), "
            f"window {mel.window} samples, {mel.fft}-point FFT"
        )
        saved.insert(3, corpus.FEATURES_FILE)
    print(f"saved in {printable(args.output)}: {', '.join(saved)}")


if __name__ == "__main__":
    cli.run(main)
