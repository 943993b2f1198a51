#!/usr/bin/env bash
# The commands that made every file in assets/, in the order they were run (see the Results section of README.md).
# Run from the repository root:  bash assets/make_assets.sh
# Training folders go to $RUNS (default /tmp/assets_runs), never into the repository.
# Real data is read from ../shared/data (full MNIST IDX files and 32 LJ Speech clips), as in the README.
#
# It was run on a shared 2-core CPU machine. OMP_NUM_THREADS=1 keeps each process on one thread:
# with two processes of two threads each on two cores, PyTorch ran up to 100 times slower.
# The MNIST recipe (section 2) alone had the machine, with two threads. Here everything runs one step
# after another.
set -euo pipefail
export OMP_NUM_THREADS=1
PY=${PY:-.venv/bin/python}
R=${RUNS:-/tmp/assets_runs}
mkdir -p "$R" assets

# Shrink the matplotlib PNGs (waveform + spectrogram) to a 64-colour palette: 150-250 KiB -> 30-70 KiB.
shrink() { "$PY" -c 'import sys; from PIL import Image; Image.open(sys.argv[1]).convert("RGB").quantize(colors=64).save(sys.argv[2], optimize=True)' "$1" "$2"; }

# ---- 1. Gated PixelCNN on scikit-learn's 8x8 digits at 2, 4 and 16 levels (row r of each grid: label r)
for L in 2 4 16; do
  "$PY" train.py --dataset digits --levels $L -d 32 -n 4 --out_hidden_dim 32 -b 32 -e 20 -o "$R/digits$L"
  "$PY" infer.py -m "$R/digits$L" -c 10 --seed 0 -o assets/digits_levels$L.png
done

# ---- 2. The MNIST recipe, shipped as assets/models/mnist_levels2.pt: 2 levels, 32 channels, 12 blocks,
# --weight_decay 0; 5 epochs at learning rate 1e-3, then resumed for 2 more at 2e-4. About 80 minutes of
# training on both cores (OMP_NUM_THREADS=2, alone on the machine; in our run epochs 6-7 ran beside a
# control at 1e-3, one thread each). Its best snapshot (the last) is shipped; then its grid and its score
MNIST2=(--dataset mnist --data_dir ../shared/data --levels 2 -d 32 -n 12 --out_hidden_dim 64 -b 32 --weight_decay 0 --snapshot_every 250 -o "$R/mnist2")
OMP_NUM_THREADS=2 "$PY" train.py "${MNIST2[@]}" -e 5
OMP_NUM_THREADS=2 "$PY" train.py "${MNIST2[@]}" -e 7 --learning_rate 0.0002 --resume "$R/mnist2"
mkdir -p assets/models
cp "$("$PY" -c 'import sys; from wavenet.checkpoint import resolve; print(resolve(sys.argv[1], "pixelcnn_"))' "$R/mnist2")" assets/models/mnist_levels2.pt
"$PY" infer.py -m assets/models/mnist_levels2.pt -c 10 --seed 0 -o assets/shipped_mnist_levels2.png
OMP_NUM_THREADS=2 "$PY" bench/sample_quality.py -m assets/models/mnist_levels2.pt --data_dir ../shared/data -k 50 --seed 0

# ---- 3. WaveNet on a 440 Hz tone (4 clips of 2 s at 8 kHz written by demo.py: loudness swelling
# between 0.4 and 0.8 once a second, random phase, a little noise), with --stats
"$PY" -c 'import sys; from demo import write_tones; write_tones(sys.argv[1], files=4, seconds=2.0, hz=440)' "$R/tones"
"$PY" preprocess.py --data "$R/tones" --output "$R/tones_data" --rate 8000 --stacks_num 1 --layers_num 6 --target_length 256 --workers 1
"$PY" train_wavenet.py -d "$R/tones_data" --stacks_num 1 --layers_num 6 --hidden_dim 16 --out_hidden_dim 16 -b 8 -e 60 --learning_rate 0.003 --stats --log_every 20 -o "$R/tone"
# from silence, temperature 1 (the default)
"$PY" infer_wavenet.py -m "$R/tone" -c 1 --length 8000 --seed 0 --plot -o "$R/tone_samples"
# continuing one of the training clips, temperature 0 (likeliest code at every step)
"$PY" infer_wavenet.py -m "$R/tone" -c 1 --length 8000 --seed 0 --temperature 0 --prime "$R/tones/tone/tone_000.wav" --plot -o "$R/tone_primed"
cp "$R/tone_primed/sample_0.wav" assets/tone_440Hz_primed.wav
shrink "$R/tone_primed/sample_0.png" assets/tone_440Hz_primed.png
cp "$R/tone_samples/sample_0.wav" assets/tone_440Hz_from_silence.wav
shrink "$R/tone_samples/sample_0.png" assets/tone_440Hz_from_silence.png
# layer statistics of four weights, from the --stats records of the tone run
"$PY" plot_stats.py "$R/tone" --layers '^(input_conv|layers\.0\.dilated|layers\.5\.dilated|head\.3)\.weight$' -o assets/tone_stats

# ---- 4. WaveNet on the 32 LJ Speech clips at 8 kHz: 2 stacks x 8 layers, 10 epochs (6, then resumed to 10)
"$PY" preprocess.py --data ../shared/data/speech/ljspeech --output "$R/lj_data" --rate 8000 --stacks_num 2 --layers_num 8 --workers 1
"$PY" train_wavenet.py -d "$R/lj_data" --stacks_num 2 --layers_num 8 --hidden_dim 32 --out_hidden_dim 32 -b 16 -e 6 -o "$R/lj"
"$PY" train_wavenet.py -d "$R/lj_data" --stacks_num 2 --layers_num 8 --hidden_dim 32 --out_hidden_dim 32 -b 16 -e 10 -r "$R/lj" -o "$R/lj"
cp "$R/lj/loss.png" assets/ljspeech_loss.png
# from silence the model stays (almost) silent; primed with 0.75 s of LJ001-0001 (6.00-6.75 s) it goes on
"$PY" infer_wavenet.py -m "$R/lj" -c 1 --length 12000 --seed 0 --plot -o "$R/lj_samples"
"$PY" - "$R/lj_prime.wav" <<'PY'
import sys
import soundfile as sf
x, sr = sf.read("../shared/data/speech/ljspeech/LJ001-0001.wav")
sf.write(sys.argv[1], x[int(6.0 * sr):int(6.75 * sr)], sr, subtype="PCM_16")
PY
"$PY" infer_wavenet.py -m "$R/lj" -c 1 --length 12000 --seed 0 --prime "$R/lj_prime.wav" --plot -o "$R/lj_primed"
cp "$R/lj_primed/sample_0.wav" assets/ljspeech_primed.wav
shrink "$R/lj_primed/sample_0.png" assets/ljspeech_primed.png

# ---- 5. Shipped models (assets/models/): the digits model at 4 levels; its best snapshot, its grid, its score
"$PY" train.py --dataset digits --levels 4 -d 32 -n 6 --out_hidden_dim 64 -b 32 -e 40 -o "$R/digits4_ship"
mkdir -p assets/models
cp "$("$PY" -c 'import sys; from wavenet.checkpoint import resolve; print(resolve(sys.argv[1], "pixelcnn_"))' "$R/digits4_ship")" assets/models/digits_levels4.pt
(cd assets/models && sha256sum digits_levels4.pt mnist_levels2.pt > SHA256SUMS)
"$PY" infer.py -m assets/models/digits_levels4.pt -c 10 --seed 0 -o assets/shipped_digits_levels4.png
"$PY" bench/sample_quality.py -m assets/models/digits_levels4.pt -k 50 --seed 0

# ---- 6. A log-mel vocoder (issue 13): bench/vocoder.py holds out the last 2 LJ Speech clips, trains a
# conditioned and an unconditioned WaveNet (2 x 10 layers, 32 channels, 16 kHz, 80 bands) side by side on
# the other 30, one process and one thread each, for 120 minutes of training each, and every 30 minutes
# resynthesises the held-out clips and scores them against Griffin-Lim from the same mel. A rerun resumes.
"$PY" bench/vocoder.py --data ../shared/data/speech/ljspeech --out "$R/vocoder" --minutes 120 --eval_minutes 30
V="$R/vocoder/resynthesis/120min/LJ001-0032"
cp "$V/sample_0.wav" assets/vocoder_LJ001-0032_wavenet.wav
cp "$V/griffin_lim.wav" assets/vocoder_LJ001-0032_griffin_lim.wav
shrink "$V/log_mel.png" assets/vocoder_LJ001-0032_log_mel.png
shrink "$R/vocoder/curve.png" assets/vocoder_curve.png

# ---- The figures quoted in the README's Results: test bits/dim from log.json, dominant frequency by numpy FFT
"$PY" - "$R" <<'PY'
import json, os, sys
import numpy as np
import soundfile as sf
R = sys.argv[1]
for run in ("digits2", "digits4", "digits16", "mnist2", "tone", "lj"):
    log = [r for r in json.load(open(os.path.join(R, run, "log.json"))) if "val_bits_per_dim" in r]
    best = min(log, key=lambda r: r["val_bits_per_dim"])
    print(f"{run:9s} epochs {log[-1]['epoch']:3d}  iterations {log[-1]['iteration']:5d}  "
          f"train bits/dim {log[-1]['train_bits_per_dim']:.4f}  last test bits/dim {log[-1]['val_bits_per_dim']:.4f}  "
          f"best {best['val_bits_per_dim']:.4f} (iteration {best['iteration']})  elapsed {log[-1]['elapsed']:.0f} s")
for wav in ("tone_440Hz_primed", "tone_440Hz_from_silence", "ljspeech_primed"):
    x, rate = sf.read(f"assets/{wav}.wav")
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    f = np.fft.rfftfreq(len(x), 1 / rate)
    peak = f[spectrum.argmax()]
    share = (spectrum[abs(f - peak) <= 10] ** 2).sum() / (spectrum ** 2).sum()
    print(f"{wav:24s} {len(x) / rate:.2f} s  rms {np.sqrt(np.mean(x ** 2)):.3f}  dominant {peak:.1f} Hz  "
          f"energy within 10 Hz of it {share:.1%}")
PY
