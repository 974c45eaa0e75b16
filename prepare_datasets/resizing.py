"""How a preparer resizes what it writes: one value for the labeled-set pipeline and the
unlabeled-image resizers, applying `data.image_resize`'s rule (docs/METHOD.md §8.3)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import numpy as np

from data.image_resize import DEFAULT_IMAGE_SIZE, resize_image, resize_mask


@dataclass(frozen=True)
class ResizeSettings:
    """The output square's side, whether the aspect ratio is kept (padding with zeros) and
    the image resampling (`data.image_resize.INTERPOLATIONS`; masks: nearest)."""

    size: int = DEFAULT_IMAGE_SIZE
    keep_aspect: bool = False
    interpolation: str = "area"

    @classmethod
    def from_args(cls, a: argparse.Namespace) -> ResizeSettings:
        """From the parsed `--image_size`, `--keep_aspect` and `--interpolation`."""
        return cls(a.image_size, a.keep_aspect, a.interpolation)

    def image(self, image: np.ndarray) -> np.ndarray:
        return resize_image(image, self.size, self.keep_aspect, self.interpolation)

    def mask(self, mask: np.ndarray) -> np.ndarray:
        """A {0, 1} (or any non-zero) mask resized as 0/255."""
        return resize_mask(mask, self.size, self.keep_aspect)
