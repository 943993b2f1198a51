"""How well a log-mel-conditioned WaveNet resynthesises held-out speech, against Griffin-Lim from the same mel.

    python bench/vocoder.py --data ../shared/data/speech/ljspeech --out /tmp/vocoder --minutes 120
    python bench/vocoder.py --quick --data ../shared/data/speech/ljspeech --out /tmp/vocoder_quick

Whole clips are held out (the last --held_out of the sorted files). The rest are preprocessed with
--mel and train two WaveNets of the same architecture for the same budget: one locally conditioned
on the log-mel frames, one unconditioned. After every --eval_minutes of training, each held-out clip
is resynthesised by `infer_wavenet.py --mel CLIP` (temperature --temperature) and by Griffin-Lim
(`librosa.feature.inverse.mel_to_audio`'s steps, --griffin_lim_iterations iterations from seeded
random phases, from the same mel frames), and both are scored against the original at the model's
rate: STOI (pystoi) and wide-band PESQ (pesq, 16 kHz; narrow-band at 8 kHz), and the held-out bits
per sample of both models (teacher-forced). The two models train side by side (one process each; their output goes to
--out/conditioned.log and --out/unconditioned.log), each by whole epochs until its own logged
training time reaches the next evaluation, so a stopped benchmark resumes where it stopped: rerun
the same command. Results: a table per evaluation, --out/vocoder.json, --out/curve.png (the metrics
against training time; rerunning a finished benchmark redraws it), and per evaluation and clip
--out/resynthesis/<minutes>min/<clip>/: sample_0.wav (WaveNet), griffin_lim.wav and log_mel.png
(the log-mel spectrograms of the original and both resyntheses).
"""

import argparse
import contextlib
import json
import math
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from wavenet import checkpoint  # noqa: E402
from wavenet.audio import load_audio, mu_law_encode, write_wav  # noqa: E402
from wavenet.features import MelSettings, log_mel, normalise, recording_frames  # noqa: E402
from wavenet.files import atomic_write  # noqa: E402
from wavenet.plots import plot_log_mels, save_png  # noqa: E402
from wavenet.recordings import find_audio  # noqa: E402
from wavenet.registry import KINDS  # noqa: E402
from wavenet.sampling import inference  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LN2 = math.log(2)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="Folder of speech recordings (wav/flac)")
    parser.add_argument("--out", required=True, help="Working folder: data, runs, resyntheses, vocoder.json")
    parser.add_argument("--rate", type=int, default=16_000, help="Sample rate (Hz): 16000 (PESQ wb) or 8000 (nb)")
    parser.add_argument("--mel", type=int, default=80, help="Log-mel bands")
    parser.add_argument("--held_out", type=int, default=2, help="Clips held out for evaluation")
    parser.add_argument("--minutes", type=float, default=120, help="Training budget of each model")
    parser.add_argument("--eval_minutes", type=float, default=20, help="Training between evaluations")
    parser.add_argument("--stacks_num", type=int, default=2)
    parser.add_argument("--layers_num", type=int, default=10)
    parser.add_argument("--hidden_dim", type=int, default=32)
    parser.add_argument("--out_hidden_dim", type=int, default=64)
    parser.add_argument("--batchsize", type=int, default=8)
    parser.add_argument("--target_length", type=int, default=1600, help="Scored samples per training window")
    parser.add_argument("--temperature", type=float, default=1.0, help="Sampling temperature of the resyntheses")
    parser.add_argument("--griffin_lim_iterations", type=int, default=32)
    parser.add_argument("--quick", action="store_true", help="A tiny model and budget: checks that it runs")
    args = parser.parse_args()
    if args.quick:
        args.minutes, args.eval_minutes, args.held_out = 0.3, 0.15, 1
        args.stacks_num, args.layers_num, args.hidden_dim, args.out_hidden_dim = 1, 6, 8, 8
        args.rate, args.mel, args.target_length = 8000, 20, 400
    return args


def run(*command, log=None):
    """Run one of the project's scripts; its output goes to ours, or is appended to the file `log`."""
    if log is None:
        subprocess.run([sys.executable, *command], cwd=ROOT, check=True)
        return
    with open(log, "a") as f:
        subprocess.run([sys.executable, *command], cwd=ROOT, check=True, stdout=f, stderr=subprocess.STDOUT)


def prepare(args, clips):
    """Preprocess the training clips (a folder of links to them) into --out/data, once."""
    data = os.path.join(args.out, "data")
    if os.path.exists(os.path.join(data, "vctk_meta.json")):
        return data
    train_links = os.path.join(args.out, "train_clips")
    os.makedirs(train_links, exist_ok=True)
    for clip in clips[: -args.held_out]:
        link = os.path.join(train_links, os.path.basename(clip))
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(clip), link)
    architecture = ["--stacks_num", str(args.stacks_num), "--layers_num", str(args.layers_num)]
    run(
        "preprocess.py",
        "--data",
        train_links,
        "--output",
        data,
        "--rate",
        str(args.rate),
        "--mel",
        str(args.mel),
        "--target_length",
        str(args.target_length),
        "--workers",
        "1",
        *architecture,
    )
    return data


def train_until(args, data, out, minutes, conditioned):
    """Train (or resume) the run in `out` by whole epochs until its logged training time reaches `minutes`.

    The log's own clock decides, so a benchmark stopped and rerun trains no run twice over."""
    flags = ["-d", data, "-o", out, "-b", str(args.batchsize), "--snapshot_every", "200"]
    flags += ["--stacks_num", str(args.stacks_num), "--layers_num", str(args.layers_num)]
    flags += ["--hidden_dim", str(args.hidden_dim), "--out_hidden_dim", str(args.out_hidden_dim)]
    if not conditioned:
        flags.append("--no_local_conditioning")
    while training_minutes(out) < minutes:
        epochs = len(read_json(os.path.join(out, "log.json"), []))
        snapshotted = os.path.isdir(out) and any(n.startswith("snapshot_iter_") for n in os.listdir(out))
        resume = ["-r", out] if snapshotted else []
        run("train_wavenet.py", *flags, *resume, "-e", str(epochs + 1), log=out + ".log")


def training_minutes(out):
    """Minutes of training the run in `out` has logged (its last epoch's elapsed time)."""
    return read_json(os.path.join(out, "log.json"), [{}])[-1].get("elapsed", 0) / 60


def read_json(path, missing):
    """The JSON in `path`, or `missing` where there is no such file."""
    if not os.path.exists(path):
        return missing
    with open(path) as f:
        return json.load(f)


def held_out_bits(model, meta, clip, rate):
    """Teacher-forced bits per sample of `model` on a held-out clip (after its lead-in, as training scored)."""
    samples = load_audio(clip, rate)
    stored = meta.get("features")
    lead_in = stored["lead_in"] if stored else meta["receptive_field"]
    codes = torch.from_numpy(mu_law_encode(np.concatenate([np.zeros(lead_in, np.float32), samples]), model.levels))
    codes = codes.long()[None]
    features = None
    if model.cin_channels:
        features = torch.from_numpy(normalise(recording_frames(samples, stored), stored).T.copy())[None]
    with inference(model):
        logits = model(codes, None, features)
    nll = torch.nn.functional.cross_entropy(logits[..., lead_in:], codes[:, lead_in:])
    return nll.item() / LN2


def griffin_lim(clip, stored, iterations):
    """Griffin-Lim from the clip's log-mel frames (the model's features), at the model's rate.

    librosa.feature.inverse.mel_to_audio's two steps, so that Griffin-Lim's random initial phases can
    be seeded: every evaluation then scores the same baseline."""
    import librosa

    settings = MelSettings.from_dict(stored)
    samples = load_audio(clip, settings.rate)
    frames = recording_frames(samples, stored)  # (F, bands), lead-in first
    magnitudes = librosa.feature.inverse.mel_to_stft(
        np.exp(frames.T).astype(np.float64),
        sr=settings.rate,
        n_fft=settings.fft,
        power=1.0,
        fmin=settings.fmin,
        fmax=settings.fmax,
    )
    audio = librosa.griffinlim(
        magnitudes,
        n_iter=iterations,
        hop_length=settings.hop,
        win_length=settings.window,
        n_fft=settings.fft,
        pad_mode="constant",
        random_state=0,
    )
    return audio[stored["lead_in"] : stored["lead_in"] + len(samples)]


def pesq_or_none():
    """The pesq package's `pesq` function, or None where it is not installed (it compiles C code at install)."""
    try:
        from pesq import pesq
    except ImportError:
        return None
    return pesq


def scores(reference, estimate, rate):
    """STOI and PESQ (nan without the pesq package) of `estimate` against `reference` (both at `rate`)."""
    from pystoi import stoi

    n = min(len(reference), len(estimate))
    reference, estimate = reference[:n].astype(np.float64), estimate[:n].astype(np.float64)
    pesq, quality = pesq_or_none(), float("nan")
    if pesq is not None:
        # pesq refuses silence or too short input ("no utterances detected"): nan then
        with contextlib.suppress(Exception):
            quality = pesq(rate, reference, estimate, "wb" if rate == 16_000 else "nb")
    return {"stoi": float(stoi(reference, estimate, rate, extended=False)), "pesq": float(quality)}


def evaluate(args, clips, runs, minutes):
    """Resynthesise and score every held-out clip with the conditioned run; bits/sample of both runs."""
    snapshot = checkpoint.load(checkpoint.resolve(runs["conditioned"], KINDS["WaveNet"].prefix))
    stored = snapshot["meta"]["features"]
    models = {}
    for name, out in runs.items():
        model_snapshot = checkpoint.load(checkpoint.resolve(out, KINDS["WaveNet"].prefix))
        models[name] = checkpoint.build_model(model_snapshot, "WaveNet", out), model_snapshot["meta"]
    rows = []
    for clip in clips[-args.held_out :]:
        name = os.path.splitext(os.path.basename(clip))[0]
        folder = os.path.join(args.out, "resynthesis", f"{minutes:g}min", name)
        reference = load_audio(clip, args.rate)
        # infer_wavenet.py takes recordings at the model's rate only
        at_rate = os.path.join(args.out, "held_out", f"{name}.wav")
        if not os.path.exists(at_rate):
            os.makedirs(os.path.dirname(at_rate), exist_ok=True)
            write_wav(at_rate, reference, args.rate)
        run("infer_wavenet.py", "-m", runs["conditioned"], "--mel", at_rate, "-c", "1", "-o", folder)
        wavenet = load_audio(os.path.join(folder, "sample_0.wav"), args.rate)
        baseline = griffin_lim(at_rate, stored, args.griffin_lim_iterations)
        write_wav(os.path.join(folder, "griffin_lim.wav"), baseline, args.rate)
        heard = {
            "original": reference,
            "WaveNet": wavenet,
            f"Griffin-Lim ({args.griffin_lim_iterations} iterations)": baseline,
        }
        panels = [(f"{title}: {name}", log_mel(audio, MelSettings.from_dict(stored))) for title, audio in heard.items()]
        plot_log_mels(panels, stored["hop"] / args.rate, os.path.join(folder, "log_mel.png"))
        row = {
            "clip": name,
            "wavenet": scores(reference, wavenet, args.rate),
            "griffin_lim": scores(reference, baseline, args.rate),
        }
        for kind, (model, meta) in models.items():
            row[f"bits_{kind}"] = held_out_bits(model, meta, at_rate, args.rate)
        rows.append(row)
    return rows


def print_table(minutes, rows):
    print(f"\nafter {minutes:g} minutes of training each")
    heads = ("STOI wavenet", "STOI G-L", "PESQ wavenet", "PESQ G-L", "bits cond", "bits uncond")
    print(f"{'clip':<14} " + " ".join(f"{h:>12}" for h in heads))
    for r in rows + [average(rows)]:
        values = (r["wavenet"]["stoi"], r["griffin_lim"]["stoi"], r["wavenet"]["pesq"], r["griffin_lim"]["pesq"])
        values += (r["bits_conditioned"], r["bits_unconditioned"])
        print(f"{r['clip']:<14} " + " ".join(f"{v:>12.3f}" for v in values))


def average(rows):
    mean = lambda key, sub=None: float(np.mean([r[key][sub] if sub else r[key] for r in rows]))
    return {
        "clip": "mean",
        "wavenet": {m: mean("wavenet", m) for m in ("stoi", "pesq")},
        "griffin_lim": {m: mean("griffin_lim", m) for m in ("stoi", "pesq")},
        "bits_conditioned": mean("bits_conditioned"),
        "bits_unconditioned": mean("bits_unconditioned"),
    }


def plot_curve(results, griffin_lim_iterations, path):
    """STOI, PESQ and held-out bits/sample against training minutes (the conditioned run's), from vocoder.json."""
    import matplotlib.pyplot as plt  # wavenet.plots has chosen the Agg backend

    minutes = [r["training_minutes"]["conditioned"] for r in results]
    mean = [r["mean"] for r in results]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.4))
    for ax, metric, title in zip(axes, ("stoi", "pesq"), ("STOI", "PESQ")):
        ax.plot(minutes, [m["wavenet"][metric] for m in mean], "o-", label="WaveNet")
        ax.plot(
            minutes, [m["griffin_lim"][metric] for m in mean], "s--", label=f"Griffin-Lim ({griffin_lim_iterations})"
        )
        ax.set_title(f"{title} (held-out mean)")
    bits = axes[2]
    bits.plot(minutes, [m["bits_conditioned"] for m in mean], "o-", label="conditioned")
    bits.plot(minutes, [m["bits_unconditioned"] for m in mean], "s--", label="unconditioned")
    bits.set_title("held-out bits/sample")
    for ax in axes:
        ax.set_xlabel("training minutes")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_png(fig, path, dpi=100)


def main():
    args = parse_args()
    os.makedirs(args.out, exist_ok=True)
    clips = find_audio(args.data)
    if len(clips) <= args.held_out:
        sys.exit(f"error: {args.data} holds {len(clips)} clips; need more than --held_out {args.held_out}")
    if pesq_or_none() is None:
        print("note: the pesq package is not installed (`pip install pesq` compiles C code): PESQ is nan")
    data = prepare(args, clips)
    runs = {name: os.path.join(args.out, name) for name in ("conditioned", "unconditioned")}
    results_path = os.path.join(args.out, "vocoder.json")
    results = read_json(results_path, [])
    trained = results[-1]["minutes"] if results else 0.0
    while trained < args.minutes - 1e-9:
        trained = min(trained + args.eval_minutes, args.minutes)
        # the two runs train side by side, one process each (set OMP_NUM_THREADS to share the cores)
        with ThreadPoolExecutor(len(runs)) as pool:
            jobs = [
                pool.submit(train_until, args, data, out, trained, name == "conditioned") for name, out in runs.items()
            ]
            for job in jobs:
                job.result()
        # the time the epochs took, which overshoots the budget by up to an epoch
        spent = {name: training_minutes(out) for name, out in runs.items()}
        if results and spent == results[-1]["training_minutes"]:
            continue  # an overshooting epoch already covered this evaluation: nothing new to score
        rows = evaluate(args, clips, runs, trained)
        print_table(spent["conditioned"], rows)
        results.append({"minutes": trained, "training_minutes": spent, "clips": rows, "mean": average(rows)})
        atomic_write(results_path, lambda f: f.write(json.dumps(results, indent=1).encode()))
    if results:
        plot_curve(results, args.griffin_lim_iterations, os.path.join(args.out, "curve.png"))
    print(f"\nresults: {results_path} and {os.path.join(args.out, 'curve.png')}")


if __name__ == "__main__":
    main()
