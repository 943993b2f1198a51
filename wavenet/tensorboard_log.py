"""TensorBoard events of a training run (--tensorboard): scalars, --stats histograms, and each epoch's sample.

Events go into the run's --out folder, where `tensorboard --logdir OUT` finds them. Every step adds
its bits/dim (the mean over processes), the gradient norm before clipping and the learning rate;
every epoch its train and validation nll and bits/dim (log.json's keys, under "epoch/"); with
--stats every log record adds a histogram of each parameter and its gradient (TensorBoard's
distributions view draws the original's seven sigma percentiles); and at each epoch's end a small
sample shows what the model has learnt so far.

torch.utils.tensorboard is imported only by a run that asks for events: the others do not load it.
"""

from dataclasses import dataclass

import torch

from .errors import UserError

FLUSH_SECONDS = 30  # how stale the events on disk may be while a run goes on (each epoch's end flushes)
SAMPLE_IMAGES = 10  # one row; image i is of class i % classes
SAMPLE_SECONDS = 1.0  # of audio, from speaker 0 of a speaker-conditioned model
SAMPLE_SEED = 0  # the same draws at every epoch, so that a sample changes only as the model does
# what --tensorboard's help says each trainer samples, and what that costs (measured on one CPU thread; the
# README's Troubleshooting has the figures)
SAMPLE_HELP = {
    "GatedPixelCNN": f"{SAMPLE_IMAGES} images from the cached sampler (at the default architecture about 30 s "
    "on a CPU for 28x28 images, as long as two training steps there)",
    "WaveNet": f"a {SAMPLE_SECONDS:g} s clip from the compiled fast generator, on the CPU (about 1 s at the "
    "default architecture and 16 kHz)",
}


@dataclass
class Images:
    """An epoch's sampled images, laid out as one picture: float (C, H, W) in [0, 1]."""

    grid: torch.Tensor

    def write(self, writer, step):
        writer.add_image("sample/images", self.grid, step)


@dataclass
class Audio:
    """An epoch's sampled clip: float (T,) in [-1, 1] at `rate` Hz."""

    samples: torch.Tensor
    rate: int

    def write(self, writer, step):
        writer.add_audio("sample/audio", self.samples[None], step, sample_rate=self.rate)


def image_sample(height, width, levels):
    """training.Task.sample for a Gated PixelCNN: sample(model) -> Images of SAMPLE_IMAGES height x width
    images from pixelcnn_sampling's cached sampler, image i of class i % classes (none if unconditioned)."""

    def sample(model):
        from .image_grid import grid  # here: torchvision loads slowly, and only --tensorboard needs it
        from .pixelcnn_sampling import sample_images

        device = next(model.parameters()).device
        label = torch.arange(SAMPLE_IMAGES, device=device) % model.num_classes if model.num_classes else None
        generator = torch.Generator(device).manual_seed(SAMPLE_SEED)  # not the global one: resume stays exact
        q = sample_images(model, SAMPLE_IMAGES, height, width, label=label, generator=generator, progress=False)
        return Images(grid(q, levels, SAMPLE_IMAGES))

    return sample


def audio_sample(rate, features=None):
    """training.Task.sample for WaveNet: sample(model) -> Audio of SAMPLE_SECONDS at `rate` Hz (speaker 0 of a
    speaker-conditioned model); None where the data does not record its rate (the original's preprocess.py).

    The one function that draws the epoch-end clip. features: for a locally conditioned model (a vocoder),
    normalised frames (bands, F) to resynthesise, such as the start of a validation recording; the clip is
    as long as they cover, SAMPLE_SECONDS at most.
    """
    if not rate:
        return None

    def sample(model):
        from .audio import mu_law_decode  # here: librosa loads slowly
        from .wavenet_sampling import generate, resolve_method, samples_for

        length = round(SAMPLE_SECONDS * rate)
        if model.cin_channels:
            length = min(length, samples_for(model, features.shape[-1]))
        speaker = torch.zeros(1, dtype=torch.long) if model.num_speakers else None
        # the CPU's fastest exact path (numba) whatever the model's device: one stream drawn a step at a time is
        # what a GPU does worst (estimates.TORCH_STEPS_PER_SECOND)
        codes = generate(
            model,
            1,
            length,
            speaker=speaker,
            generator=torch.Generator().manual_seed(SAMPLE_SEED),  # not the global one: resume stays exact
            method=resolve_method("auto", torch.device("cpu")),
            progress=False,
            features=None if features is None else features.to(next(model.parameters()).device),
        )
        return Audio(mu_law_decode(codes[0].cpu(), model.levels), rate)

    return sample


class TensorBoardLog:
    """The events of one run in folder `out`, written by the main process.

    purge_step: the first iteration this process trains. Events of that step and later that an
    earlier process of the run wrote after its last trainer snapshot (the one a resume goes on from)
    are hidden by TensorBoard, so that no step shows twice; a new run hides those of a run that
    stopped before its first snapshot.
    """

    def __init__(self, out, purge_step):
        try:
            from torch.utils.tensorboard import SummaryWriter  # here: only runs with --tensorboard load it
        except ImportError:  # torch raises it when the tensorboard package is missing
            raise UserError(
                "--tensorboard needs the tensorboard package: pip install tensorboard (see requirements.txt)"
            ) from None
        self.writer = SummaryWriter(out, purge_step=purge_step, flush_secs=FLUSH_SECONDS)

    def step(self, iteration, bits_per_dim, grad_norm, learning_rate):
        """One training step: its bits/dim, the gradient norm before clipping, the learning rate."""
        self.writer.add_scalar("step/bits_per_dim", bits_per_dim, iteration)
        self.writer.add_scalar("step/grad_norm", grad_norm, iteration)
        self.writer.add_scalar("step/learning_rate", learning_rate, iteration)

    def epoch(self, iteration, metrics):
        """An epoch's metrics ({log.json key: value}) as "epoch/<key>"; flushes, so the epoch shows at once."""
        for key, value in metrics.items():
            self.writer.add_scalar(f"epoch/{key}", value, iteration)
        self.writer.flush()

    def histograms(self, model, iteration):
        """Every parameter of `model` and its gradient (the last step's) as histograms (--stats)."""
        for name, p in model.named_parameters():
            self.writer.add_histogram(f"weights/{name}", p.detach().float().cpu(), iteration)
            if p.grad is not None:
                self.writer.add_histogram(f"gradients/{name}", p.grad.detach().float().cpu(), iteration)

    def sample(self, drawn, iteration):
        """An epoch's sample (Images or Audio, from training.Task.sample)."""
        drawn.write(self.writer, iteration)
        self.writer.flush()

    def close(self):
        self.writer.close()
