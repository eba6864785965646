"""Sky background estimation and subtraction, one level per band."""

from __future__ import annotations

import math

import numpy as np
from astropy.stats import sigma_clipped_stats

from ._arrays import as_float_image, as_pixel_mask


def estimate_background(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    sigma: float = 3.0,
    maxiters: int = 5,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate the sky level and sky noise of every band by sigma clipping.

    Sources are rejected by iterative clipping at ``sigma`` standard
    deviations around the median (astropy ``sigma_clipped_stats``); what
    survives is sky.

    Parameters
    ----------
    image : array_like
        (..., H, W) pixels, e.g. (bands, H, W) or a batch (N, bands, H, W).
        Non-finite pixels are ignored.
    mask : array_like, optional
        True where a pixel must not be used (stars, artefacts); (H, W) masks
        apply to every band.
    sigma : float
        Clipping threshold, in standard deviations.
    maxiters : int
        Maximum number of clipping iterations.
    max_pixels : int, optional
        Estimate from a regular sub-grid of at most about this many pixels per
        band.  Sky statistics converge long before a 400 x 400 stamp is
        exhausted, and clipping cost grows with the pixel count.

    Returns
    -------
    level, noise : ndarray
        float64 arrays of shape ``image.shape[:-2]``: the clipped median and
        standard deviation, in image units.  NaN for a band without any
        usable pixel.
    """
    array = as_float_image(image)
    pixel_mask = as_pixel_mask(mask, array.shape)
    if max_pixels is not None:
        height, width = array.shape[-2:]
        step = max(1, math.ceil(math.sqrt(height * width / max_pixels)))
        array = array[..., ::step, ::step]
        if pixel_mask is not None:
            pixel_mask = pixel_mask[..., ::step, ::step]
    invalid = ~np.isfinite(array)
    if invalid.any():
        # Masked here rather than left to astropy, which warns about each one.
        pixel_mask = invalid if pixel_mask is None else (invalid | pixel_mask)
    elif pixel_mask is not None:
        # astropy needs a full-size mask for the axis-wise statistics.
        pixel_mask = np.ascontiguousarray(pixel_mask)
    _, level, noise = sigma_clipped_stats(
        array, mask=pixel_mask, sigma=sigma, maxiters=maxiters, axis=(-2, -1)
    )
    return np.asarray(level, dtype=np.float64), np.asarray(noise, dtype=np.float64)


def subtract_background(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    sigma: float = 3.0,
    maxiters: int = 5,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Subtract the sigma-clipped sky level from every band.

    Parameters
    ----------
    image : array_like
        (..., H, W) pixels; the caller's array is left untouched.
    mask, sigma, maxiters, max_pixels
        As in :func:`estimate_background`.

    Returns
    -------
    ndarray
        float32 image whose sky median is about zero.  A band without any
        usable pixel is returned unchanged.
    """
    array = as_float_image(image)
    level, _ = estimate_background(
        array, mask=mask, sigma=sigma, maxiters=maxiters, max_pixels=max_pixels
    )
    level = np.nan_to_num(level, nan=0.0).astype(np.float32)
    return array - level[..., None, None]


def typical_noise(images, max_images: int = 16) -> float:
    """Median sky noise over the first few images of a sample.

    Lupton et al. (2004) soften the arcsinh stretch at about the sky noise, so
    this is the natural ``stretch_softening`` scale for one data set; using a
    single value for the whole set keeps brightnesses comparable between
    galaxies.

    Parameters
    ----------
    images : sequence of array_like
        (bands, H, W) images, e.g. a ``GalaxyCollection`` (its items'
        ``.image`` is used) or a list of arrays.
    max_images : int
        How many images to look at.

    Returns
    -------
    float
        The median clipped standard deviation (image units); 1.0 when no
        image has a measurable noise (noiseless simulations).
    """
    noises = []
    for index in range(min(max_images, len(images))):
        item = images[index]
        _, noise = estimate_background(getattr(item, "image", item))
        noises.extend(np.asarray(noise).ravel().tolist())
    value = float(np.nanmedian(noises)) if noises else float("nan")
    return value if np.isfinite(value) and value > 0 else 1.0
