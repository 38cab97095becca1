"""Measurements of how a result looks, shared by the benchmarks and the tests that hold them as acceptance checks.

They judge a result from outside (nothing here is optimized), so they live with the benchmarks and not
in the library: the CIELAB conversion they need (scikit-image) is no dependency of rendering.
"""

from __future__ import annotations

import numpy as np
from skimage.color import rgb2lab


def colour_shift(result: np.ndarray, content_rgb: np.ndarray, style_rgb: np.ndarray, *, lab: bool) -> float:
    """How far the per-channel mean and std moved from the content's toward the style's (0: none, 1: all).

    A check of a result that the style loss does not optimize directly: the projection of the change
    in (mean, std) per channel (RGB, or CIELAB with `lab`) onto the way from the content to the style.
    """

    def stats(rgb: np.ndarray) -> np.ndarray:
        pixels = rgb.astype(np.float64) / 255.0
        pixels = (rgb2lab(pixels) if lab else pixels).reshape(-1, 3)
        return np.concatenate([pixels.mean(axis=0), pixels.std(axis=0)])

    out, start, goal = stats(result), stats(content_rgb), stats(style_rgb)
    return float((out - start) @ (goal - start) / ((goal - start) @ (goal - start)))
