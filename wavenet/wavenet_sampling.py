"""Generating audio codes from a WaveNet, one sample per step.

Three ways to compute the next logits, all with the model's own modules and weights:

* "naive", the original's algorithm: a full forward pass over everything so far
  for every new sample, so the cost of a sample grows with the length.
* "torch", fast-wavenet caching (Paine et al. 2016, arXiv:1611.09482): every
  layer keeps its last `reach` inputs, and one step calls each `blocks.ResidualLayer`
  on a window of reach + 1, which yields exactly one output. Batched; CPU or CUDA.
* "numba", the same caching compiled for the CPU (`fast_wavenet`).

The caches start from a forward pass over the prime (or nothing), with the
silence the model assumes before x[0], so teacher-forced logits equal
`model(codes)` from the first step on. A locally conditioned model's features
cover prime and new samples alike; `LocalTerms` projects them a block of frames
at a time, so memory stays flat however long the utterance. Every path draws a code by
`sampling.inverse_cdf_sample`, one `torch.rand(count)` in float64 per step, so
a seeded generator gives the same samples on every path.
"""

import warnings

import torch
import torch.nn.functional as F

from . import estimates
from .layers import causal_inputs
from .report import bar
from .sampling import inference, pick

try:
    from . import fast_wavenet
except ImportError:  # numba missing: "auto" uses the torch path
    fast_wavenet = None

METHODS = ("auto", "torch", "numba", "naive")
COMPILED_STEPS = 1024  # steps per call of the compiled kernel: its progress-bar granularity


def generate(
    model,
    count,
    length,
    speaker=None,
    prime=None,
    temperature=1.0,
    generator=None,
    method="auto",
    progress=True,
    features=None,
):
    """Sample `count` sequences of `length` new mu-law codes from a WaveNet -> long (count, length).

    speaker: (count,) long ids, or None for an unconditioned model; prime: codes
    (P,) or (count, P) the samples continue (silence before it, as in training);
    temperature: divides the logits, 0 takes the likeliest code; generator: the
    torch.Generator that drives the draws (the global one if None); method:
    "auto" (numba on CPU when installed, else torch), "torch", "numba" or "naive";
    features: (cin_channels, F) or (count, cin_channels, F) frames over prime and
    new samples for a locally conditioned model (P + length <= samples_for(model, F)).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be 0 or positive, got {temperature}")
    if count <= 0 or length < 0:
        raise ValueError(f"need count > 0 and length >= 0, got count={count}, length={length}")
    device = next(model.parameters()).device
    prime = _as_prime(model, prime, count, device)
    speaker = None if speaker is None else speaker.to(device)
    model.check_speaker(speaker, count)
    features = _as_features(model, features, count, prime.shape[1] + length, device)
    session_type = _session_type(method, device)
    out = [torch.empty(count, 0, dtype=torch.long, device=device)]
    with (
        inference(model),
        bar(total=length, disable=not progress, desc=f"sampling ({session_type.name})", unit="sample") as shown,
    ):
        session = session_type(model, prime, speaker, features)
        for start in range(0, length, session.steps_per_call):
            n = min(session.steps_per_call, length - start)
            out.append(session.sample(n, temperature, generator))
            shown.update(n)
    return torch.cat(out, 1)


def incremental_logits(model, codes, speaker=None, prime=None, method="auto", features=None):
    """Teacher forcing through a generation path: codes (B, T) -> logits (B, levels, T).

    Step t sees codes[:, :t] after `prime` ((P,) or (B, P)), so the result should
    equal model(cat(prime, codes), speaker, features)[..., P:].
    """
    B = codes.shape[0]
    device = next(model.parameters()).device
    prime = _as_prime(model, prime, B, device)
    speaker = None if speaker is None else speaker.to(device)
    model.check_speaker(speaker, B)
    features = _as_features(model, features, B, prime.shape[1] + codes.shape[1], device)
    with inference(model):
        return _session_type(method, device)(model, prime, speaker, features).force(codes.to(device))


def samples_for(model, frames):
    """How many samples `frames` feature frames condition: every position needs its frame and the next."""
    return (frames - 1) * model.config.hop_length


class LocalTerms:
    """Every layer's local conditioning at the frame rate, for a block of frames at a time.

    features: (B, cin_channels, F). `frames(start, length)` gives, for positions start ..
    start+length-1 (start >= 0), the first frame f0 they need and per layer its 1x1 projection of
    frames f0 .. (start+length-1) // hop + 1, stacked to (B, layers, 2*hidden, frames): about
    length / hop frames, whatever the utterance's length.
    """

    def __init__(self, model, features):
        self.model, self.features, self.hop = model, features, model.config.hop_length

    def frames(self, start, length):
        f0 = start // self.hop
        f1 = (start + length - 1) // self.hop + 2  # one past the last frame needed
        block = self.features[..., f0:f1]
        return f0, torch.stack([layer.features(block) for layer in self.model.layers], 1)

    def at(self, start, length):
        """Per layer its local conditioning at positions start .. start+length-1: [(B, 2*hidden, length)]."""
        f0, terms = self.frames(start, length)
        offset = start - f0 * self.hop  # positions within the block's frames
        return list(self.model.upsample(terms, offset, length).unbind(1))


def initial_state(model, prime, speaker, features=None):
    """The caches before the first new step, from one forward pass over prime (B, P).

    Returns pending (B,): the code the first step feeds (prime's last, or
    silence); history (B, k-1): the k-1 codes before it; buffers: per layer its
    inputs at the `reach` steps before the first new one, (B, C, reach).
    """
    # one silence in front moves every position by one step (silence is all
    # there was before it): the forward's last position then is the step before
    # the first new one, also for P = 0
    x = F.pad(prime, (1, 0), value=model.silence)
    buffers = []

    def keep_inputs(layer, args):
        h = args[0]  # (B, C, reach + later steps)
        # slice from the front: h[..., -0:] would keep everything when reach is 0
        buffers.append(h[:, :, h.shape[2] - layer.dilated.reach :].clone())

    hooks = [layer.register_forward_pre_hook(keep_inputs) for layer in model.layers]
    try:
        # x[0] is the silence one step before the prime: its position on the frames' timeline is -1
        model(x, speaker, features, output_length=1, offset=-1)
    finally:
        for hook in hooks:
            hook.remove()
    # history: the k - 1 codes before pending, silence before x[0]; what an output at x's last
    # position sees with a receptive field of k - 1 (the input convolution's window, less pending)
    k = model.input_conv.kernel_size[0]
    return x[:, -1], causal_inputs(x, k - 1, 1, model.silence), buffers


class _Session:
    """A batch of streams being extended one step at a time."""

    steps_per_call = 1  # steps `generate` hands over at once

    def sample(self, n, temperature, generator):
        """Draw the next n codes -> (B, n) long."""
        codes = []
        for _ in range(n):
            code = pick(self.next_logits(), temperature, generator)
            self.feed(code)
            codes.append(code)
        return torch.stack(codes, 1)

    def force(self, codes):
        """Feed given codes (B, n) -> logits (B, levels, n): logits[..., i] predict codes[:, i]."""
        logits = []
        for code in codes.unbind(1):
            logits.append(self.next_logits())
            self.feed(code)
        return torch.stack(logits, 2)


class FullForward(_Session):
    """The original's algorithm: the whole sequence so far through `model.forward` for each step."""

    name = "naive"

    def __init__(self, model, prime, speaker, features=None):
        self.model, self.speaker, self.codes, self.features = model, speaker, prime, features

    def next_logits(self):
        # the code appended is never seen (the model is causal); the output there predicts the next code
        x = F.pad(self.codes, (0, 1), value=self.model.silence)
        return self.model(x, self.speaker, self.features)[:, :, -1]

    def feed(self, code):
        self.codes = torch.cat([self.codes, code[:, None]], 1)


class Cached(_Session):
    """Per-layer caches in torch: each step runs every layer on its last reach + 1 inputs."""

    name = "torch"

    def __init__(self, model, prime, speaker, features=None):
        self.model, self.speaker = model, speaker
        self.pending, self.history, self.buffers = initial_state(model, prime, speaker, features)
        self.local = None if features is None else LocalTerms(model, features)
        self.position = prime.shape[1]  # of the next code, on the features' timeline

    def next_logits(self):
        """One step of `WaveNet.forward` on the caches -> logits (B, levels) for the next position."""
        codes = torch.cat([self.history, self.pending[:, None]], 1)  # (B, k): the input convolution's window
        self.history = codes[:, 1:]
        h = self.model.embed(codes)  # (B, C, 1)
        local = self.local.at(self.position, 1) if self.local else [None] * len(self.model.layers)
        skips = 0
        for i, layer in enumerate(self.model.layers):
            window = torch.cat([self.buffers[i], h], 2)  # (B, C, reach + 1)
            self.buffers[i] = window[:, :, 1:]
            h, skip = layer(window, self.speaker, 1, local[i])  # (B, C, 1) or None, (B, S, 1)
            skips = skips + skip
        return self.model.head(skips)[:, :, 0]

    def feed(self, code):
        self.pending = code
        self.position += 1


class Compiled(_Session):
    """The caches as ring buffers in `fast_wavenet`'s compiled kernel, run in blocks of steps."""

    name = "numba"
    steps_per_call = COMPILED_STEPS

    def __init__(self, model, prime, speaker, features=None):
        pending, history, buffers = initial_state(model, prime, speaker, features)
        param = next(model.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.weights = fast_wavenet.pack(model, len(prime), speaker)
        self.rings = fast_wavenet.ring_state(buffers)
        self.history = history.cpu().numpy().copy()
        self.pending = pending.cpu().numpy().copy()
        self.local = None if features is None else LocalTerms(model, features)
        self.start = prime.shape[1]  # position of the first new code on the features' timeline
        self.steps = 0  # the ring slots rotate with it

    def _run(self, n, **kwargs):
        local = None
        if self.local is not None:
            # the block's frames, projected by every layer in one batch with torch: (B, frames, L, 2C)
            f0, terms = self.local.frames(self.start + self.steps, n)
            position = self.start + self.steps - f0 * self.local.hop  # of the first step, within the block
            local = fast_wavenet.LocalBlock.of(terms, self.local.model.upsample, position)
        out = fast_wavenet.run(self.weights, self.rings, self.history, self.pending, self.steps, local=local, **kwargs)
        self.steps += out.shape[1]
        return torch.from_numpy(out).to(self.device)

    def sample(self, n, temperature, generator):
        B = len(self.pending)
        if temperature == 0:
            uniforms = torch.zeros(n, B, dtype=torch.float64)  # argmax draws nothing, like `pick`
        else:
            device = generator.device if generator is not None else torch.device("cpu")
            draw = dict(generator=generator, dtype=torch.float64, device=device)
            # the CPU generator gives n draws of torch.rand(B) in one call; CUDA's counter-based
            # one would give other numbers, so there each step draws on its own, as `pick` does
            uniforms = (
                torch.rand(n, B, **draw)
                if device.type == "cpu"
                else torch.stack([torch.rand(B, **draw) for _ in range(n)])
            )
        return self._run(n, uniforms=uniforms.cpu().numpy(), temperature=temperature)

    def force(self, codes):
        logits = self._run(codes.shape[1], forced=codes.cpu().numpy().astype("int64"))  # (B, n, levels) float32
        return logits.transpose(1, 2).to(self.dtype)


SESSIONS = {"naive": FullForward, "torch": Cached, "numba": Compiled}


def resolve_method(method, device):
    """The path `generate` takes for `method` on `device`: "numba", "torch" or "naive" ("auto": numba on
    the CPU where it is installed, else torch; "numba" without numba falls back to torch)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if method == "auto":
        method = "numba" if fast_wavenet is not None and device.type == "cpu" else "torch"
    return "torch" if method == "numba" and fast_wavenet is None else method


def estimated_seconds(model, count, length, method="auto"):
    """About how long generate(model, count, length, method=method) takes, before it runs
    (estimates.generation_seconds, with the kernel's thread count)."""
    device = next(model.parameters()).device
    path = resolve_method(method, device)
    threads = fast_wavenet.default_threads() if path == "numba" else 1
    return estimates.generation_seconds(model.config, count, length, path, threads)


def _session_type(method, device):
    path = resolve_method(method, device)
    if method == "numba" and path != "numba":
        warnings.warn("numba is not installed: generating with the cached torch path instead")
    return SESSIONS[path]


def _as_features(model, features, count, length, device):
    """features None, (cin, F) or (count, cin, F) -> (count, cin, F) float on `device`, checked to cover
    `length` positions (prime and new codes), or None for a model without local conditioning."""
    if features is not None:
        features = torch.as_tensor(features, device=device, dtype=next(model.parameters()).dtype)
        if features.dim() == 2:
            features = features.expand(count, -1, -1)
    model.check_features(features, count)
    if features is not None and length > samples_for(model, features.shape[-1]):
        raise ValueError(
            f"{features.shape[-1]} frames condition {samples_for(model, features.shape[-1])} samples, "
            f"fewer than the {length} asked for (prime included)"
        )
    return features


def _as_prime(model, prime, count, device):
    """prime None, (P,) or (count, P) codes -> (count, P) long on `device`."""
    if prime is None:
        return torch.empty(count, 0, dtype=torch.long, device=device)
    prime = torch.as_tensor(prime, device=device).long()
    if prime.dim() == 1:
        prime = prime.expand(count, -1)
    if prime.dim() != 2 or prime.shape[0] != count:
        raise ValueError(f"prime must have shape (P,) or ({count}, P), got {tuple(prime.shape)}")
    if prime.numel() and (prime.min() < 0 or prime.max() >= model.levels):
        raise ValueError(f"prime codes must lie in 0..{model.levels - 1}")
    return prime
