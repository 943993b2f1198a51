"""WaveNet's local conditioning (section 2.5): causality, the features' reach, and every generation path."""

import numpy as np
import pytest
import torch

from wavenet import wavenet_sampling
from wavenet.audio import mu_law_decode, mu_law_encode
from wavenet.layers import FrameUpsampler
from wavenet.models import WaveNet
from wavenet.objectives import wavenet_nll

HOP = 7
BANDS = 5


def conditioned_model(seed=0, speakers=3):
    """A random WaveNet with speaker and local conditioning whose upsampler is no longer a plain interpolation."""
    torch.manual_seed(seed)
    model = WaveNet(32, 16, 16, 2, 4, num_speakers=speakers, cin_channels=BANDS, hop_length=HOP)
    with torch.no_grad():
        model.upsample.kernel.add_(0.3 * torch.randn_like(model.upsample.kernel))
        for layer in model.layers:
            layer.features.weight.mul_(5)  # make the conditioning matter as much as the audio
    return model


def frames_for(length):
    return (length - 1) // HOP + 2


def test_upsampler_starts_as_linear_interpolation_centred_on_frames():
    up = FrameUpsampler(4)
    y = torch.tensor([[[0.0, 4.0, 8.0, 0.0]]])
    # frame f sits on sample 4f; in between, a straight line
    assert up(y, 0, 12).flatten().tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8, 6, 4, 2]
    # before frame 0 the frames count as frame 0
    assert up(y, -3, 3).flatten().tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="need 5"):
        up(y, 0, 13)


def test_logits_never_see_the_present_or_future_audio():
    model = conditioned_model()
    T = 40
    x = torch.nn.functional.one_hot(torch.randint(0, 32, (1, T)), 32).float().transpose(1, 2).requires_grad_()
    features = torch.randn(1, BANDS, frames_for(T))
    logits = model(x, torch.tensor([1]), features)
    R = model.receptive_field
    for t in (0, 9, 25, T - 1):
        (grad,) = torch.autograd.grad(logits[0, :, t].sum(), x, retain_graph=True)
        seen = grad.abs().sum(1)[0]
        assert (seen[t:] == 0).all(), t
        if t:
            assert (seen[max(t - R, 0) : t] != 0).all(), t


def test_features_reach_only_the_frames_around_each_sample():
    model = conditioned_model()
    T = 50
    R = model.receptive_field
    codes = torch.randint(0, 32, (1, T))
    features = torch.randn(1, BANDS, frames_for(T), requires_grad=True)
    logits = model(codes, torch.tensor([0]), features)
    for t in (3, 22, 36, T - 1):
        (grad,) = torch.autograd.grad(logits[0, :, t].sum(), features, retain_graph=True)
        seen = grad.abs().sum(1)[0]
        f = t // HOP
        # look-ahead: the sample's own frame and the next, never later ones
        assert (seen[f + 2 :] == 0).all(), t
        assert seen[f] != 0 and (t % HOP == 0 or seen[f + 1] != 0), t
        # look-back: no further than the receptive field's oldest position
        assert (seen[: max((t - R) // HOP, 0)] == 0).all(), t


@pytest.mark.parametrize("method", ["naive", "torch", "numba"])
@pytest.mark.parametrize("prime_length", [0, 9])
def test_teacher_forced_paths_equal_the_forward_pass(method, prime_length):
    model = conditioned_model()
    B, T = 2, 60
    codes = torch.randint(0, 32, (B, prime_length + T))
    speaker = torch.tensor([0, 2])
    features = torch.randn(B, BANDS, frames_for(prime_length + T))
    with torch.no_grad():
        full = model(codes, speaker, features)[..., prime_length:]
    forced = wavenet_sampling.incremental_logits(
        model, codes[:, prime_length:], speaker, prime=codes[:, :prime_length], method=method, features=features
    )
    tolerance = 1e-4 if method == "numba" else 1e-5
    assert (forced - full).abs().max() < tolerance


def test_seeded_samples_are_the_same_on_every_path():
    model = conditioned_model()
    B, T = 3, 45
    speaker = torch.tensor([0, 1, 2])
    features = torch.randn(B, BANDS, frames_for(T))
    samples = [
        wavenet_sampling.generate(
            model,
            B,
            T,
            speaker,
            generator=torch.Generator().manual_seed(5),
            method=method,
            progress=False,
            features=features,
        )
        for method in ("naive", "torch", "numba")
    ]
    assert all(torch.equal(samples[0], s) for s in samples[1:])


def test_long_generation_runs_in_blocks_with_flat_memory():
    """Over several compiled blocks and many frames the kernel's interpolation keeps matching the torch path."""
    model = conditioned_model(speakers=0)
    T = wavenet_sampling.COMPILED_STEPS * 2 + 100
    features = torch.randn(1, BANDS, frames_for(T))
    codes = torch.randint(0, 32, (1, T))
    with torch.no_grad():
        full = model(codes, None, features)
    forced = wavenet_sampling.incremental_logits(model, codes, method="numba", features=features)
    assert (forced - full).abs().max() < 1e-4
    local = wavenet_sampling.LocalTerms(model, features)
    f0, terms = local.frames(1500, wavenet_sampling.COMPILED_STEPS)
    assert terms.shape[-1] <= wavenet_sampling.COMPILED_STEPS // HOP + 3  # a block's frames, not the utterance's


def test_features_must_fit_the_model():
    model = conditioned_model()
    codes = torch.randint(0, 32, (1, 20))
    with pytest.raises(ValueError, match="features must be"):
        model(codes, torch.tensor([0]))
    with pytest.raises(ValueError, match="features must be"):
        model(codes, torch.tensor([0]), torch.randn(1, BANDS + 1, 5))
    with pytest.raises(ValueError, match="need"):
        model(codes, torch.tensor([0]), torch.randn(1, BANDS, 3))
    with pytest.raises(ValueError, match="no local conditioning"):
        WaveNet(32, 8, 8, 1, 3)(codes, features=torch.randn(1, BANDS, 5))
    with pytest.raises(ValueError, match="condition"):
        wavenet_sampling.generate(model, 1, 100, torch.tensor([0]), features=torch.randn(BANDS, 4), progress=False)
    with pytest.raises(ValueError, match="hop_length"):
        WaveNet(32, 8, 8, 1, 3, cin_channels=4)


def test_unconditioned_interface_is_unchanged():
    model = WaveNet(32, 8, 8, 1, 3)
    codes = torch.randint(0, 32, (2, 12))
    assert model(codes).shape == (2, 32, 12)
    assert model(codes, None, output_length=4).shape == (2, 32, 4)
    assert model.config.cin_channels == 0 and model.upsample is None


# ---- learning: a briefly trained model follows the pitch track it is given, an unconditioned one cannot

RATE, TONE_HOP, SEGMENT, TONE_LEVELS = 4000, 32, 4, 64  # a segment of one tone: 4 frames, 128 samples
TONES = (250.0, 1000.0)  # Hz


def tone_track(track, rng):
    """Tones following `track` (tone index per segment) -> mu-law codes (T,), one-hot frames (2, frames)."""
    n = len(track) * SEGMENT * TONE_HOP
    hz = np.repeat(np.array(TONES)[track], SEGMENT * TONE_HOP)
    x = 0.6 * np.sin(np.cumsum(2 * np.pi * hz / RATE) + rng.uniform(0, 2 * np.pi)) + 0.01 * rng.standard_normal(n)
    frames = np.repeat(np.eye(2)[track], SEGMENT, axis=0)
    frames = np.concatenate([frames, frames[-1:]])  # the frame after the last sample
    return mu_law_encode(x, TONE_LEVELS), frames.T.astype(np.float32)


def train_on_tones(local, steps=200, batch=8):
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = WaveNet(TONE_LEVELS, 16, 16, 1, 5, cin_channels=2 if local else 0, hop_length=TONE_HOP if local else 0)
    optimizer = torch.optim.Adam(model.parameters(), 6e-3)
    loss = wavenet_nll(2 * SEGMENT * TONE_HOP, conditioned=False, local=local)
    for _ in range(steps):
        windows = [tone_track(rng.integers(0, 2, 4), rng) for _ in range(batch)]
        codes = torch.tensor(np.stack([w[0] for w in windows])).long()
        frames = torch.tensor(np.stack([w[1] for w in windows]))
        nll, n = loss(model, (codes, torch.zeros(batch, dtype=torch.long), frames))
        optimizer.zero_grad()
        (nll / n).backward()
        optimizer.step()
    return model


def share_following(model, local, seeds=(1, 2, 3), segments=24):
    """Fraction of generated segments whose dominant tone is the one the track asks for."""
    hits = 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        track = rng.integers(0, 2, segments)
        _, frames = tone_track(track, rng)
        codes = wavenet_sampling.generate(
            model,
            1,
            segments * SEGMENT * TONE_HOP,
            generator=torch.Generator().manual_seed(seed),
            progress=False,
            features=torch.tensor(frames) if local else None,
        )
        x = mu_law_decode(codes[0].numpy(), TONE_LEVELS)
        for k, tone in enumerate(track):
            segment = x[(k * SEGMENT + 1) * TONE_HOP : (k + 1) * SEGMENT * TONE_HOP]  # past the switch
            spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment))))
            hz = np.fft.rfftfreq(len(segment), 1 / RATE)
            hits += int(np.argmax([spectrum[np.abs(hz - f) < 60].sum() for f in TONES]) == tone)
    return hits / (len(seeds) * segments)


def test_a_conditioned_model_follows_the_pitch_track_and_an_unconditioned_one_cannot():
    conditioned = share_following(train_on_tones(local=True), local=True)
    unconditioned = share_following(train_on_tones(local=False), local=False)
    assert conditioned >= 0.8, conditioned
    assert unconditioned <= 0.75 and conditioned - unconditioned >= 0.2, (conditioned, unconditioned)
