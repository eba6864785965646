"""Per-band normalisation of pixel values."""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ._arrays import as_float_image

NORMALISATIONS = ("minmax", "zscore", "none")


def normalise(
    image: np.ndarray,
    method: str = "minmax",
    clip_percentiles: tuple[float, float] = (0.5, 99.5),
) -> np.ndarray:
    """Rescale every band (every (H, W) plane) on its own.

    Parameters
    ----------
    image : array_like
        (..., H, W) pixels.
    method : {'minmax', 'zscore', 'none'}
        ``'minmax'`` maps the lower clip percentile to 0 and the upper one to
        1 and clips to [0, 1] (a constant band becomes 0); ``'zscore'``
        subtracts the mean and divides by the standard deviation (a constant
        band becomes 0); ``'none'`` copies.  Fill non-finite pixels first:
        they would make the band's statistics NaN.
    clip_percentiles : (float, float)
        Lower and upper percentiles (0-100) for ``'minmax'``; clipping a few
        hot pixels keeps one cosmic ray from setting the scale.

    Returns
    -------
    ndarray
        New float32 array of the same shape.

    Raises
    ------
    ConfigError
        For an unknown method or percentiles outside 0 <= low < high <= 100.
    """
    if method not in NORMALISATIONS:
        raise ConfigError(
            f"normalise: unknown method '{method}' (choose from {', '.join(NORMALISATIONS)})"
        )
    low, high = clip_percentiles
    if not 0 <= low < high <= 100:
        raise ConfigError(
            f"normalise: clip_percentiles {clip_percentiles} must satisfy 0 <= low < high <= 100"
        )
    array = as_float_image(image)
    if method == "none":
        return array.copy()
    planes = array.reshape(*array.shape[:-2], -1)
    if method == "zscore":
        mean = planes.mean(axis=-1, keepdims=True, dtype=np.float64)
        std = planes.std(axis=-1, keepdims=True, dtype=np.float64)
        scale = np.where(std > 0, std, 1.0)
        return ((planes - mean) / scale).astype(np.float32).reshape(array.shape)
    # float32 bounds keep the arithmetic on the (large) pixel array in float32.
    lower, upper = _plane_percentiles(planes, (low, high)).astype(np.float32)
    span = upper - lower
    scaled = planes - lower
    scaled /= np.where(span > 0, span, np.float32(np.inf))
    return np.clip(scaled, 0.0, 1.0, out=scaled).reshape(array.shape)


def _plane_percentiles(planes: np.ndarray, percentiles: tuple[float, float]) -> np.ndarray:
    """``np.percentile(planes, percentiles, axis=-1, keepdims=True)``, faster for many small planes.

    One sort of each row is about five times faster than numpy's selection
    of four order statistics per row on a batch of 64-pixel stamps; the
    values are the same ('linear' interpolation).  Rows with non-finite
    values go to numpy, which defines what they give.
    """
    if not np.isfinite(planes).all():
        return np.percentile(planes, percentiles, axis=-1, keepdims=True)
    ordered = np.sort(planes, axis=-1)
    position = np.asarray(percentiles, dtype=np.float64) / 100 * (planes.shape[-1] - 1)
    below = np.floor(position).astype(np.int64)
    above = np.minimum(below + 1, planes.shape[-1] - 1)
    fraction = position - below
    low_values, high_values = ordered[..., below], ordered[..., above]
    interpolated = low_values + (high_values - low_values) * fraction
    return np.moveaxis(interpolated, -1, 0)[..., None]
