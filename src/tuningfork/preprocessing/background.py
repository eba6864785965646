"""Sky background estimation and subtraction, one level per band."""

from __future__ import annotations

import math

import numpy as np

from ._arrays import as_float_image, as_pixel_mask


def clipped_median_and_std(planes: np.ndarray, sigma: float = 3.0, maxiters: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Sigma-clipped median and standard deviation of every row, all rows at once.

    The same statistics as astropy's ``sigma_clipped_stats`` (clip at
    ``sigma`` standard deviations around the median, repeat until nothing
    changes or ``maxiters`` passes; ``std`` with ``ddof=0``), about ten
    times faster on a batch of small stamps: astropy clips each row on its
    own, while here every row is sorted once and, since what survives
    clipping is always a contiguous run of the sorted values, each pass only
    moves two indices per row, with sums from cumulative sums.

    Parameters
    ----------
    planes : ndarray
        (rows, pixels); non-finite values mark pixels not to use.
    sigma : float
        Clipping threshold, in standard deviations.
    maxiters : int
        Maximum number of clipping passes.

    Returns
    -------
    median, std : ndarray
        float64 (rows,); NaN for a row without any usable pixel.
    """
    values = np.asarray(planes)
    if values.dtype != np.float64:
        # Float32 stamps are sorted and compared as float32 (half the memory
        # traffic); sums always accumulate in float64.
        values = values.astype(np.float32)
    finite = np.isfinite(values)
    values = np.sort(values if finite.all() else np.where(finite, values, np.nan), axis=-1)  # NaN sorts last
    n_rows, n_pixels = values.shape
    rows = np.arange(n_rows)
    start = np.zeros(n_rows, dtype=np.int64)
    stop = finite.sum(axis=-1)
    # Sums about a value near the centre keep the variance from cancelling
    # when the sky level is large compared with its noise.  NaN (after each
    # row's usable values) never enters a sum that is read.
    centred = values - values[rows, np.maximum(stop - 1, 0) // 2][:, None]
    sums = np.zeros((n_rows, n_pixels + 1))
    squares = np.zeros((n_rows, n_pixels + 1))
    np.cumsum(centred, axis=-1, dtype=np.float64, out=sums[:, 1:])
    np.cumsum(np.square(centred, dtype=np.float64), axis=-1, out=squares[:, 1:])

    def statistics():
        count = stop - start
        safe = np.maximum(count, 1)
        middle_low = values[rows, np.minimum(start + (safe - 1) // 2, n_pixels - 1)].astype(np.float64)
        middle_high = values[rows, np.minimum(start + safe // 2, n_pixels - 1)].astype(np.float64)
        median = np.where(count > 0, (middle_low + middle_high) / 2, np.nan)
        mean = (sums[rows, stop] - sums[rows, start]) / safe
        variance = (squares[rows, stop] - squares[rows, start]) / safe - mean**2
        std = np.where(count > 0, np.sqrt(np.maximum(variance, 0.0)), np.nan)
        return median, std

    active = stop > 0
    with np.errstate(invalid="ignore"):
        for _ in range(maxiters):
            if not active.any():
                break
            median, std = statistics()
            lower, upper = median - sigma * std, median + sigma * std
            # Sorted rows, NaN last: what survives is a run of the sorted values,
            # from the first not below ``lower`` (as many values are below it) to
            # the last not above ``upper``.  Counting over all rows at once costs
            # less than a binary search per row in Python, and than the sort.
            first = np.maximum(start, np.count_nonzero(values < lower[:, None], axis=-1))
            last = np.maximum(first, np.minimum(stop, np.count_nonzero(values <= upper[:, None], axis=-1)))
            # Only rows that changed in the last pass can change again.
            first, last = np.where(active, first, start), np.where(active, last, stop)
            active = (first != start) | (last != stop)
            start, stop = first, last
        return statistics()


def estimate_background(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    sigma: float = 3.0,
    maxiters: int = 5,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate the sky level and sky noise of every band by sigma clipping.

    Sources are rejected by iterative clipping at ``sigma`` standard
    deviations around the median (astropy ``sigma_clipped_stats``'s
    statistics, computed for all bands and images at once by
    :func:`clipped_median_and_std`); what survives is sky.

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
    if pixel_mask is not None:
        array = np.where(pixel_mask, np.nan, array)
    level, noise = clipped_median_and_std(array.reshape(-1, array.shape[-2] * array.shape[-1]), sigma, maxiters)
    return level.reshape(array.shape[:-2]), noise.reshape(array.shape[:-2])


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
