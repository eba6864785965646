"""Colour previews of galaxy images: bands to an RGB array in [0, 1].

Pixel-level and numpy-only, so the writers of data sets (cutout previews,
simulated galaxies) and the figures of :mod:`tuningfork.plots` share one
display scaling without data depending on the plotting code.
"""

from __future__ import annotations

import numpy as np


def bands_to_rgb(image: np.ndarray) -> np.ndarray:
    """Map (bands, H, W), bands ordered blue to red, to (3, H, W) red first.

    One band becomes grey; two bands fill red and blue with their mean as
    green; of three or more, the reddest three are used (i, r, g of
    g, r, i, z as red, green, blue, as in SDSS composites).

    Parameters
    ----------
    image : ndarray
        (bands, H, W) or (H, W).

    Returns
    -------
    ndarray
        float32 (3, H, W), red first.
    """
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.shape[0] >= 3:
        return array[-3:][::-1]
    if array.shape[0] == 2:
        return np.stack([array[1], array.mean(axis=0), array[0]])
    return np.repeat(array, 3, axis=0)


def display_rgb(image: np.ndarray, softening: float = 0.02, clip_percentile: float = 99.5) -> np.ndarray:
    """Turn a (bands, H, W) image into an (H, W, 3) array in [0, 1] for display.

    Bands are mapped to colours by :func:`bands_to_rgb`.  Pixels are scaled by
    a per-image percentile and stretched with an arcsinh, which shows faint
    outskirts without saturating cores.

    Parameters
    ----------
    image : ndarray
        (bands, H, W) or (H, W) array in any units.
    softening : float
        Arcsinh softening relative to the clipped maximum; smaller values
        stretch the faint end harder.
    clip_percentile : float
        Percentile of the finite pixels mapped to white.

    Returns
    -------
    ndarray
        float32 (H, W, 3) in [0, 1]; non-finite pixels are black.
    """
    rgb = bands_to_rgb(image)
    finite = np.isfinite(rgb)
    if not finite.any():
        return np.zeros(rgb.shape[1:] + (3,), dtype=np.float32)
    values = rgb[finite]
    # The median is the sky in a cutout, so the sky shows dark, not grey.
    low = np.median(values)
    high = np.percentile(values, clip_percentile)
    scale = max(high - low, np.finfo(np.float32).tiny)
    scaled = np.where(finite, (rgb - low) / scale, 0.0)
    stretched = np.arcsinh(np.clip(scaled, 0.0, None) / softening) / np.arcsinh(1.0 / softening)
    return np.clip(np.moveaxis(stretched, 0, -1), 0.0, 1.0).astype(np.float32)
