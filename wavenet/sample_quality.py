"""Scoring class-conditional samples: a digit classifier fitted on the real data, and the test set's bits/dim.

A Gated PixelCNN conditioned on label y should draw images of class y. A small CNN, fitted on the real
training images quantised to the model's levels (so it sees what the samples look like), says which
class each sample shows; the fraction it assigns to the label the sample was drawn for measures
conditioning and legibility together. A model that ignores its label scores about 1 / classes.
"""

import math
import time
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .image_data import dequantize
from .objectives import bits_per_dim, pixelcnn_nll
from .sampling import inference

CLASSIFIER_BATCH = 64
CLASSIFIER_LEARNING_RATE = 2e-3  # Adam, decayed linearly to 0 over the fit
CLASSIFIER_EPOCHS = 2  # MNIST: 1,876 steps, 98.1% of the real test images at 4 levels, ~20 s on one core
CLASSIFIER_MIN_STEPS = 1000  # the 8x8 digits: 1,438 images are 23 steps an epoch, so 44 epochs (97.8%, ~5 s)
# One thread: the steps are small (1.3 MFLOP an image), and with two threads a fit ran 6x slower than with
# one whenever the other core was busy (a training beside it), and little faster on an idle machine.
FIT_THREADS = 1
EVAL_BATCH = 500  # images per forward pass when classifying


class DigitClassifier(nn.Module):
    """Two stride-2 3x3 convolutions and a linear layer: grey (B, 1, H, W) in [0, 1] -> (B, classes) logits.

    Strided convolutions rather than max-pooling: on the CPU max_pool2d_with_indices took 40% of a
    step, and this net fits an MNIST epoch in about 12 s on one core. H and W are the data set's
    (28 for MNIST, 8 for the digits); each convolution halves them, rounding up.
    """

    def __init__(self, height, width, classes=10):
        super().__init__()
        self.height, self.width, self.classes = height, width, classes
        self.conv1 = nn.Conv2d(1, 16, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, stride=2, padding=1)
        quarter = ((height + 1) // 2 + 1) // 2, ((width + 1) // 2 + 1) // 2
        self.fc = nn.Linear(32 * quarter[0] * quarter[1], classes)

    def forward(self, x):
        B, _, H, W = x.shape
        h = F.relu(self.conv1(x - 0.5))  # (B, 16, H/2, W/2); centred like the PixelCNN's input
        h = F.relu(self.conv2(h))  # (B, 32, H/4, W/4)
        return self.fc(h.flatten(1))


def grey(q, levels):
    """Quantised images (N, C, H, W) in 0..levels-1 -> (N, 1, H, W) floats in [0, 1], the classifier's input.

    The mean over the colour channels: MNIST is tiled to RGB, and a sample's channels are drawn one
    after another, so they may disagree a little; the digit is what they show together.
    """
    return dequantize(q, levels).mean(1, keepdim=True)


@dataclass
class FittedClassifier:
    """A DigitClassifier fitted on one data set at one number of levels, with its record on the real test set."""

    model: DigitClassifier
    levels: int
    test_accuracy: float  # on the real test images, quantised like the training images
    test_per_label: list  # the same, per label: fraction of that label's test images classified as it
    test_images: int
    train_images: int
    fit_seconds: float  # 0 when it was loaded from a cache

    def state(self):
        """What a --classifier_cache file holds: plain values and tensors (loadable with weights_only=True)."""
        m = self.model
        return {
            "shape": [m.height, m.width, m.classes],
            "levels": self.levels,
            "model": m.state_dict(),
            "test_accuracy": self.test_accuracy,
            "test_per_label": self.test_per_label,
            "test_images": self.test_images,
            "train_images": self.train_images,
            "fit_seconds": self.fit_seconds,
        }

    @classmethod
    def from_state(cls, state):
        height, width, classes = state["shape"]
        model = DigitClassifier(height, width, classes)
        model.load_state_dict(state["model"])
        fields = ("levels", "test_accuracy", "test_per_label", "test_images", "train_images", "fit_seconds")
        return cls(model, **{name: state[name] for name in fields})


def fit_classifier(train_q, train_labels, test_q, test_labels, levels, classes=10, seed=0):
    """Fit a DigitClassifier on quantised images and measure it on the test images.

    train_q, test_q: (N, C, H, W) levels 0..levels-1; *_labels: (N,) long in 0..classes-1.
    Runs CLASSIFIER_EPOCHS epochs or CLASSIFIER_MIN_STEPS steps, whichever is more, from `seed`
    (the global RNG is left as it was). Returns a FittedClassifier.
    """
    start = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(FIT_THREADS)
    try:
        model = _fit(train_q, train_labels, levels, classes, seed)
    finally:
        torch.set_num_threads(threads)
    predicted = classify(model, test_q, levels)
    per_label = label_counts(predicted, test_labels, classes)
    return FittedClassifier(
        model=model,
        levels=levels,
        test_accuracy=(predicted == test_labels).float().mean().item(),
        test_per_label=[hits / max(n, 1) for n, hits in per_label],
        test_images=len(test_labels),
        train_images=len(train_labels),
        fit_seconds=time.perf_counter() - start,
    )


def _fit(train_q, train_labels, levels, classes, seed):
    """fit_classifier's training loop: the fitted DigitClassifier."""
    N, _, H, W = train_q.shape
    x, y = grey(train_q, levels), train_labels.long()
    steps_per_epoch = math.ceil(N / CLASSIFIER_BATCH)
    epochs = max(CLASSIFIER_EPOCHS, math.ceil(CLASSIFIER_MIN_STEPS / steps_per_epoch))
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):  # the weights' initialisation, without touching the caller's RNG
        torch.manual_seed(seed)
        model = DigitClassifier(H, W, classes)
    optimizer = torch.optim.Adam(model.parameters(), lr=CLASSIFIER_LEARNING_RATE)
    total = epochs * steps_per_epoch
    # linear decay to 0, so that the last steps of a short fit settle (MNIST: 97.9% -> 98.1%, one comparison)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 - step / total)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(N, generator=generator)
        for batch in order.split(CLASSIFIER_BATCH):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    return model


def classify(model, q, levels):
    """Quantised images (N, C, H, W) -> (N,) long: the class the classifier sees in each."""
    with inference(model):
        return torch.cat([model(grey(part, levels)).argmax(1) for part in q.cpu().split(EVAL_BATCH)])


def label_counts(predicted, labels, classes=10):
    """[(images of the label, how many of them were classified as it)] per label 0..classes-1."""
    return [
        (int((labels == label).sum()), int(((labels == label) & (predicted == label)).sum()))
        for label in range(classes)
    ]


def dataset_bits_per_dim(model, dataset, device, limit=None, batch=100):
    """The model's bits/dim on a TensorDataset of (levels uint8 (C, H, W), label); the first `limit` images.

    Summed nll over every image, divided once (objectives.bits_per_dim). Returns (bits/dim, images).
    """
    q_all, labels_all = dataset.tensors
    n = len(labels_all) if limit is None else min(limit, len(labels_all))
    loss = pixelcnn_nll(model.levels)
    nll_sum = 0.0
    with inference(model):
        for start in range(0, n, batch):
            part = slice(start, min(start + batch, n))
            q, label = q_all[part].to(device), labels_all[part].to(device)
            batch_sum, _ = loss(model, (q, label if model.num_classes else None))
            nll_sum += batch_sum.item()
    C, H, W = q_all.shape[1:]
    return bits_per_dim(nll_sum, n, C * H * W), n
