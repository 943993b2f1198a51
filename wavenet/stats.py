"""Layer-wise statistics of weights, biases and their gradients (the original's --stats)."""

import torch

# the 7 sigma percentiles: mean and +-1, 2, 3 standard deviations of a normal distribution
SIGMA_PERCENTILES = (0.13, 2.28, 15.87, 50.0, 84.13, 97.72, 99.87)
QUANTILE_LIMIT = 2**24


def summarize(t):
    """Min, max, mean, std, the 7 sigma percentiles and the fraction of zeros of a tensor."""
    t = t.detach().float().flatten().cpu()
    # torch.quantile takes at most 2**24 values: use an even subsample (no RNG, so resume stays exact)
    q = torch.quantile(t[:: t.numel() // QUANTILE_LIMIT + 1], torch.tensor(SIGMA_PERCENTILES) / 100)
    return {
        "min": t.min().item(),
        "max": t.max().item(),
        "mean": t.mean().item(),
        "std": t.std().item() if t.numel() > 1 else 0.0,
        "percentiles": [round(v, 8) for v in q.tolist()],
        "zeros": (t == 0).float().mean().item(),
    }


def layer_statistics(model):
    """{parameter name: {"data": summary, "grad": summary or None}} for every parameter of `model`."""
    return {
        name: {"data": summarize(p), "grad": summarize(p.grad) if p.grad is not None else None}
        for name, p in model.named_parameters()
    }
