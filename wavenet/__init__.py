"""Gated PixelCNN and WaveNet in PyTorch."""

from .models import GatedPixelCNN, WaveNet, receptive_field

__all__ = ["GatedPixelCNN", "WaveNet", "receptive_field"]
