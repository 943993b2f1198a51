"""The papers' objectives: the negative log-likelihood each model trains on, and bits per dimension."""

import math

import torch.nn.functional as F

from .image_data import dequantize

LN2 = math.log(2.0)


def bits_per_dim(nll_sum, items, dims):
    """Summed nll in nats over `items` items of `dims` dimensions each -> bits per dimension.

    Sum first and divide once (not a mean of per-batch means), so a short last batch weighs what
    it holds; no items gives 0 rather than a division by zero.
    """
    return nll_sum / (max(items, 1) * dims * LN2)


def pixelcnn_nll(levels, conditioned=True):
    """Loss for Gated PixelCNN batches (levels uint8 (B, C, H, W), labels (B,)).

    conditioned: pass the labels to the model (False: an unconditioned one, which takes none).
    Returns loss(model, batch) -> (nll summed over the batch in nats, images in the batch).
    """

    def loss(model, batch):
        q, label = batch
        q = q.long()
        logits = model(dequantize(q, levels), label if conditioned else None)  # (B, levels, C, H, W)
        return F.cross_entropy(logits.float(), q, reduction="sum"), q.shape[0]

    return loss


def wavenet_nll(scored, conditioned, local=False):
    """Loss for WaveNet windows (codes long (B, R + scored), speakers (B,)[, frames (B, bands, F)]).

    Only the last `scored` samples of each window count: the first receptive field
    exists to give them full context, as the original masked it. conditioned: pass the
    speakers to the model; local: the windows carry feature frames for its local conditioning.
    Returns loss(model, batch) -> (nll summed over scored samples in nats, scored samples).
    """

    def loss(model, batch):
        codes, speaker = batch[0].long(), batch[1] if conditioned else None
        features = batch[2] if local else None
        logits = model(codes, speaker, features, output_length=scored)  # (B, levels, scored)
        target = codes[:, -scored:]
        return F.cross_entropy(logits.float(), target, reduction="sum"), target.numel()

    return loss


def epoch_metrics(train_sum, train_items, val_sum, val_items, dims):
    """An epoch record's nll per item (nats) and bits/dim, from nll sums over all ranks and batches."""
    return {
        "train_nll": train_sum / max(train_items, 1),
        "val_nll": val_sum / max(val_items, 1),
        "train_bits_per_dim": bits_per_dim(train_sum, train_items, dims),
        "val_bits_per_dim": bits_per_dim(val_sum, val_items, dims),
    }
