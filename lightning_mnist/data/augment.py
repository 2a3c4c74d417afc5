"""The notebook's ImageDataGenerator augmentation as batched tensor work (kornia).

Parameters are drawn per image and applied to the whole batch at once on the
batch's own device. The ranges keep Keras' meaning: rotation in degrees, x and
y zoom drawn independently, shifts as fractions of the image size, shear in
degrees, edge pixels repeated ("nearest" fill), no flips.
"""

from __future__ import annotations

import torch
from kornia.augmentation import RandomAffine
from torch import nn


class NotebookAugmentation(nn.Module):
    """``ImageDataGenerator(rotation_range, zoom_range, width/height_shift_range, shear_range)``."""

    def __init__(self, rotation: float = 5.0, zoom: float = 0.05, shift: float = 0.05,
                 shear: float = 0.05) -> None:
        super().__init__()
        self.affine = RandomAffine(
            degrees=rotation,
            translate=(shift, shift),
            scale=(1 - zoom, 1 + zoom, 1 - zoom, 1 + zoom),  # x and y zoom drawn independently
            shear=shear,
            padding_mode="border",  # Keras' fill_mode="nearest"
            p=1.0,  # kornia's default is 0.5; Keras transforms every image
        )

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.affine(images)
