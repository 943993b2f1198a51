"""WaveNet generation: the cached torch step and the compiled numba step against the full forward pass."""

import copy

import numba
import pytest
import torch
import torch.nn.functional as F

from wavenet.models import WaveNet
from wavenet.sampling import pick
from wavenet.wavenet_sampling import generate, incremental_logits

LEVELS = 16
TOLERANCE = {"torch": 1e-5, "numba": 1e-4}  # numba runs in float32, the model here in float64


def tiny_model(num_speakers=0, kernel_width=2, seed=0):
    """A float64 WaveNet small enough for CPU tests (receptive field 15 at kernel_width 2)."""
    torch.manual_seed(seed)
    model = WaveNet(
        LEVELS,
        hidden_dim=6,
        out_hidden_dim=5,
        stacks_num=2,
        layers_num=3,
        kernel_width=kernel_width,
        num_speakers=num_speakers,
    ).double()
    # non-zero biases and embeddings everywhere, so a missed bias or condition term shows up
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return model


def speakers_for(model, batch):
    return torch.arange(batch) % model.num_speakers if model.num_speakers else None


def seeded(seed=7):
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("method", ["torch", "numba"])
@pytest.mark.parametrize("num_speakers", [0, 3])
@pytest.mark.parametrize("kernel_width", [1, 2, 3])  # 1: no layer caches anything (reach 0)
@pytest.mark.parametrize("prime_length", [0, 4])
def test_incremental_logits_match_forward(method, num_speakers, kernel_width, prime_length):
    """Teacher forced, every step equals the full forward pass, the first R steps (silence) included."""
    model = tiny_model(num_speakers, kernel_width)
    R = model.receptive_field
    codes = torch.randint(0, LEVELS, (3, 2 * R + 3))
    prime = torch.randint(0, LEVELS, (3, prime_length))
    speaker = speakers_for(model, 3)
    expected = model(torch.cat([prime, codes], 1), speaker)[:, :, prime_length:]
    got = incremental_logits(model, codes, speaker, prime=prime, method=method)
    assert got.shape == expected.shape == (3, LEVELS, 2 * R + 3)
    assert torch.allclose(got, expected, atol=TOLERANCE[method], rtol=0)


@pytest.mark.parametrize("method", ["torch", "numba"])
def test_incremental_logits_see_the_speaker(method):
    """The equivalence above is not vacuous: another speaker changes the incremental logits."""
    model = tiny_model(num_speakers=3)
    codes = torch.randint(0, LEVELS, (2, 20))
    a = incremental_logits(model, codes, torch.tensor([0, 1]), method=method)
    b = incremental_logits(model, codes, torch.tensor([2, 2]), method=method)
    assert (a - b).abs().max() > 1e-2


@pytest.mark.parametrize("threads", [1, 2])
def test_seeded_sampling_is_identical_on_every_path(threads):
    model = tiny_model(num_speakers=3)
    speaker = speakers_for(model, 3)
    prime = torch.randint(0, LEVELS, (3, 5))
    length = 3 * model.receptive_field  # long enough for every ring buffer to wrap around
    previous = numba.get_num_threads()
    numba.set_num_threads(threads)
    try:
        draws = {
            method: generate(model, 3, length, speaker, prime, generator=seeded(), method=method, progress=False)
            for method in ("naive", "torch", "numba")
        }
    finally:
        numba.set_num_threads(previous)
    assert draws["naive"].shape == (3, length) and draws["naive"].dtype == torch.long
    assert torch.equal(draws["torch"], draws["naive"])
    assert torch.equal(draws["numba"], draws["naive"])
    again = generate(model, 3, length, speaker, prime, generator=seeded(), method="numba", progress=False)
    assert torch.equal(again, draws["numba"])
    other = generate(model, 3, length, speaker, prime, generator=seeded(8), method="numba", progress=False)
    assert not torch.equal(other, draws["numba"])


def test_global_generator_drives_every_path_alike():
    model = tiny_model()
    draws = []
    for method in ("torch", "numba"):
        torch.manual_seed(3)
        draws.append(generate(model, 2, 20, method=method, progress=False))
    assert torch.equal(draws[0], draws[1])


def test_cached_step_runs_each_layer_once_on_a_fixed_window():
    """Per sample, every layer runs once on reach + 1 inputs, however long the output already is.

    The naive path, for contrast, feeds every layer a window that grows with the output.
    """
    model = tiny_model()
    seen = {layer: [] for layer in model.layers}
    hooks = [
        layer.register_forward_pre_hook(lambda layer, args: seen[layer].append(args[0].shape[2]))
        for layer in model.layers
    ]
    try:
        length = 4 * model.receptive_field
        generate(model, 2, length, generator=seeded(), method="torch", progress=False)
        # one call for the initial state, then one per sample
        for layer, widths in seen.items():
            assert len(widths) == 1 + length
            assert set(widths[1:]) == {layer.dilated.reach + 1}
        for widths in seen.values():
            widths.clear()
        generate(model, 2, 5, generator=seeded(), method="naive", progress=False)
        first = model.layers[0]
        assert seen[first][-1] > seen[first][0]
    finally:
        for hook in hooks:
            hook.remove()


@pytest.mark.parametrize("method", ["torch", "numba", "naive"])
def test_samples_continue_the_prime(method):
    """The first sample is a draw from the full forward pass over the prime, with the same random number."""
    model = tiny_model(num_speakers=3)
    speaker = speakers_for(model, 4)
    prime = torch.randint(0, LEVELS, (4, 9))
    out = generate(model, 4, 6, speaker, prime, temperature=0.8, generator=seeded(), method=method, progress=False)
    with torch.no_grad():
        logits = model(F.pad(prime, (0, 1)), speaker)[:, :, -1]  # the padded code is never seen
    assert torch.equal(out[:, 0], pick(logits, 0.8, seeded()))
    # a 1-D prime is the same prime for every stream
    one = generate(model, 4, 6, speaker, prime[0], generator=seeded(), method=method, progress=False)
    every = generate(model, 4, 6, speaker, prime[:1].expand(4, -1), generator=seeded(), method=method, progress=False)
    assert torch.equal(one, every)


@pytest.mark.parametrize("method", ["torch", "numba", "naive"])
def test_temperature_zero_is_greedy(method):
    """At temperature 0 each sample is the argmax of the full forward pass over what came before."""
    model = tiny_model(num_speakers=3)
    speaker = speakers_for(model, 2)
    prime = torch.randint(0, LEVELS, (2, 3))
    out = generate(model, 2, 30, speaker, prime, temperature=0, method=method, progress=False)
    with torch.no_grad():
        logits = model(torch.cat([prime, out], 1), speaker)[:, :, 3:]
    assert torch.equal(out, logits.argmax(1))


@pytest.mark.parametrize("method", ["torch", "numba"])
def test_temperature_divides_the_logits(method):
    """Sampling at temperature T equals sampling at 1 from a model whose logits are divided by T."""
    model = tiny_model()
    cooler = copy.deepcopy(model)
    with torch.no_grad():
        cooler.head[-1].weight.mul_(2)
        cooler.head[-1].bias.mul_(2)
    a = generate(model, 3, 40, temperature=0.5, generator=seeded(), method=method, progress=False)
    b = generate(cooler, 3, 40, temperature=1.0, generator=seeded(), method=method, progress=False)
    assert torch.equal(a, b)


def test_model_mode_is_restored():
    model = tiny_model().train()
    generate(model, 1, 3, method="torch", progress=False)
    assert model.training


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(method="fast"), "method"),
        (dict(temperature=-1.0), "temperature"),
        (dict(prime=torch.zeros(3, 4, dtype=torch.long)), "prime"),
        (dict(prime=torch.full((5,), LEVELS)), "prime"),
        (dict(speaker=torch.tensor([0, 1])), "speaker"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        generate(tiny_model(), 2, 5, progress=False, **kwargs)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_torch_path_matches_cpu():
    model = tiny_model(num_speakers=3)
    speaker = speakers_for(model, 3)
    codes = torch.randint(0, LEVELS, (3, 40))
    cpu = incremental_logits(model, codes, speaker, method="torch")
    cuda = incremental_logits(model.cuda(), codes.cuda(), speaker.cuda(), method="torch")
    assert torch.allclose(cuda.cpu(), cpu, atol=1e-5, rtol=0)
    # a CPU generator drives the draws on either device
    a = generate(model, 3, 30, speaker.cuda(), generator=seeded(), method="torch", progress=False)
    b = generate(model.cpu(), 3, 30, speaker, generator=seeded(), method="torch", progress=False)
    assert torch.equal(a.cpu(), b)
