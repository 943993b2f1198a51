"""What both samplers share: drawing one level per row of logits, and running a model for inference.

`pixelcnn_sampling` (images) and `wavenet_sampling` (audio) draw every value
with `inverse_cdf_sample`, from one `torch.rand(count)` in float64 per step, so
a seeded generator gives the same draws on every path of either sampler.
"""

import contextlib

import torch


def inverse_cdf_sample(logits, generator=None):
    """Draw one level per row: logits (B, levels) -> (B,) long, from one torch.rand(B) in float64.

    float64 keeps the CDF's last entry at 1 up to rounding; the clamp covers a
    uniform draw above a last entry that rounded below it.
    """
    B, levels = logits.shape
    cdf = torch.softmax(logits.double(), dim=1).cumsum(dim=1)  # (B, levels)
    device = generator.device if generator is not None else logits.device
    u = torch.rand(B, generator=generator, dtype=torch.float64, device=device).to(logits.device)
    # the first level whose cumulative probability exceeds u
    return torch.searchsorted(cdf, u[:, None], right=True)[:, 0].clamp_(max=levels - 1)


def pick(logits, temperature, generator=None):
    """Next codes (B,) long from logits (B, levels): argmax at temperature 0, else a draw from softmax(logits / T)."""
    if temperature == 0:
        return logits.argmax(1)
    return inverse_cdf_sample(logits.double() / temperature, generator)


@contextlib.contextmanager
def inference(model):
    """no_grad and eval mode for the duration; the previous mode comes back afterwards."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield
    finally:
        model.train(was_training)
