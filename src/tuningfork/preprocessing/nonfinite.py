"""Finding and filling NaN and infinite pixels."""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import ConfigError
from ._arrays import as_float_image, as_pixel_mask


def nonfinite_mask(image: np.ndarray) -> np.ndarray:
    """Return a boolean array, True where a pixel is NaN or infinite.

    Parameters
    ----------
    image : array_like
        Pixels of any shape.

    Returns
    -------
    ndarray of bool
        Same shape as ``image``.
    """
    return ~np.isfinite(np.asarray(image))


def band_medians(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Median of the unmasked pixels of every (H, W) plane.

    Parameters
    ----------
    image : array_like
        (..., H, W) pixels.
    mask : array_like of bool
        True where a pixel must be left out; broadcastable to ``image``.

    Returns
    -------
    ndarray
        float32 array of shape ``image.shape[:-2]``; 0 for a plane with no
        unmasked pixel, so that filling it gives a flat, finite band.
    """
    array = as_float_image(image)
    pixel_mask = as_pixel_mask(mask, array.shape)
    hidden = np.where(pixel_mask, np.float32(np.nan), array)
    with warnings.catch_warnings():
        # An all-masked plane is expected here and handled just below.
        warnings.simplefilter("ignore", RuntimeWarning)
        medians = np.nanmedian(hidden, axis=(-2, -1))
    return np.nan_to_num(medians, nan=0.0).astype(np.float32)


def fill_masked(image: np.ndarray, mask: np.ndarray, fill: float | str = "median") -> np.ndarray:
    """Replace masked pixels by a constant or by their band's median.

    Parameters
    ----------
    image : array_like
        (..., H, W) pixels.
    mask : array_like of bool
        True where a pixel must be replaced; broadcastable to ``image``.
    fill : float or 'median'
        The replacement value (in the image's current units), or ``'median'``
        for the median of the band's unmasked pixels.

    Returns
    -------
    ndarray
        New float32 array with no masked pixel left.

    Raises
    ------
    ConfigError
        When ``fill`` is neither a finite number nor ``'median'``.
    """
    array = as_float_image(image)
    pixel_mask = as_pixel_mask(mask, array.shape)
    if isinstance(fill, str):
        if fill != "median":
            raise ConfigError(f"fill_masked: fill '{fill}' must be a number or 'median'")
        replacement = band_medians(array, pixel_mask)[..., None, None]
    else:
        if not np.isfinite(fill):
            raise ConfigError(f"fill_masked: fill value {fill} must be finite")
        replacement = np.float32(fill)
    return np.where(pixel_mask, replacement, array).astype(np.float32, copy=False)


def fill_nonfinite(image: np.ndarray, fill: float | str = "median") -> tuple[np.ndarray, int]:
    """Replace NaN and infinite pixels and count them.

    Parameters
    ----------
    image : array_like
        (..., H, W) pixels.
    fill : float or 'median'
        As in :func:`fill_masked`.

    Returns
    -------
    filled : ndarray
        New float32 array, all finite.
    count : int
        Number of pixels that were replaced.
    """
    array = as_float_image(image)
    mask = nonfinite_mask(array)
    return fill_masked(array, mask, fill), int(mask.sum())
