"""Sky level and noise of a cutout, measured away from every source.

statmorph needs a sky-subtracted image, and its Sersic fit is very sensitive
to the sky: subtracting galaxy light as if it were sky truncates the profile,
so the fitted Sersic index and half-light radius both come out too small.
The sigma-clipped median of a whole cutout is such a biased sky whenever the
galaxy fills a good part of it (the clipping removes the core, not the
wings).  Here the sky is measured only on pixels outside a dilated mask of
every detected source, and the estimate is flagged when too few such pixels
remain or the galaxy reaches the cutout's edge, because then its wings are in
every "sky" pixel left.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import EmptyImageError, InputFileError

#: Share of the cutout that must be free of sources for a trusted sky.
MIN_SKY_FRACTION = 0.2
#: Iterations of detect-mask-remeasure: the first sky is biased by the
#: sources, so the detection threshold is recomputed from a cleaner one.
_SKY_ITERATIONS = 3
#: Dilation of the source mask, in pixels: the faint outskirts of a galaxy
#: lie below the detection threshold but still bias a sky estimate.
_DILATE_PIXELS = 5


@dataclass(frozen=True)
class SkyEstimate:
    """Sky of one cutout.

    Attributes
    ----------
    level : float
        Sky level subtracted before measuring, in image units (0 when the
        image was declared sky-subtracted).
    rms : float
        Per-pixel 1-sigma scatter of the sky, in image units.
    flag : int
        0 when the level was given or measured on a large enough source-free
        area; 1 (suspect) when fewer than :data:`MIN_SKY_FRACTION` of the
        pixels are source-free or the central source touches the cutout
        edge, so the level likely holds galaxy light.
    sky_fraction : float
        Share of the valid pixels used for the estimate.
    """

    level: float
    rms: float
    flag: int
    sky_fraction: float


def _source_mask(
    pixels: np.ndarray, ignore: np.ndarray, level: float, rms: float, nsigma: float
) -> np.ndarray:
    """Dilated mask of every source ``nsigma`` sky rms above ``level``."""
    from astropy.convolution import convolve
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.segmentation import detect_sources, make_2dgaussian_kernel
    from photutils.utils import circular_footprint
    from photutils.utils.exceptions import NoDetectionsWarning
    from scipy import ndimage

    # Smoothing over a few pixels finds the low-surface-brightness outskirts
    # that a per-pixel threshold misses.
    kernel = make_2dgaussian_kernel(3.0, size=7)
    with warnings.catch_warnings():
        # A large masked region leaves NaN after interpolation; it is masked
        # in the detection below anyway.
        warnings.simplefilter("ignore", AstropyUserWarning)
        smoothed = convolve(np.where(ignore, 0.0, pixels - level), kernel, mask=ignore)
    smoothed = np.where(np.isfinite(smoothed), smoothed, 0.0)
    # The smoothed image has a smaller noise than a single pixel: the
    # threshold is set on the smoothed noise, not on ``rms``.
    smoothed_rms = rms * float(np.sqrt((kernel.array**2).sum()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segments = detect_sources(smoothed, nsigma * smoothed_rms, n_pixels=10, mask=ignore)
    if segments is None:
        return np.zeros(pixels.shape, dtype=bool)
    return ndimage.binary_dilation(
        segments.data > 0, structure=circular_footprint(_DILATE_PIXELS).astype(bool)
    )


def estimate_sky(
    image: np.ndarray,
    *,
    mask: np.ndarray | None = None,
    level: float | None = None,
    nsigma: float = 2.0,
    name: str = "image",
) -> SkyEstimate:
    """Measure the sky level and rms of a cutout on its source-free pixels.

    Parameters
    ----------
    image : ndarray
        2-D image (not modified).
    mask : ndarray, optional
        bool map of bad pixels to leave out (non-finite pixels always are).
    level : float, optional
        Known sky level (0 for an image already sky-subtracted): only the
        rms is then measured, around this level.
    nsigma : float
        Threshold, in units of the smoothed sky rms, of the sources masked
        before the sky is measured.
    name : str
        Name of the image, used in error messages.

    Returns
    -------
    SkyEstimate
        Level, rms, quality flag and share of pixels used.

    Raises
    ------
    EmptyImageError
        If no pixel is finite and unmasked.
    InputFileError
        If the sky has zero scatter.
    """
    from astropy.stats import sigma_clipped_stats

    pixels = np.asarray(image, dtype=np.float64)
    ignore = ~np.isfinite(pixels)
    if mask is not None:
        ignore = ignore | np.asarray(mask, dtype=bool)
    if ignore.all():
        raise EmptyImageError(name, "no finite, unmasked pixel")
    _, median, rms = sigma_clipped_stats(pixels, mask=ignore, sigma=3.0)
    sky_level = float(median) if level is None else float(level)
    if not rms > 0:
        raise InputFileError(name, "sky has zero scatter; pass gain or weightmap")
    sources = np.zeros(pixels.shape, dtype=bool)
    for _ in range(_SKY_ITERATIONS):
        sources = _source_mask(pixels, ignore, sky_level, float(rms), nsigma)
        sky = ~(ignore | sources)
        if sky.sum() < 10:
            break
        _, median, rms = sigma_clipped_stats(pixels, mask=~sky, sigma=3.0)
        if level is None:
            sky_level = float(median)
        if not rms > 0:
            raise InputFileError(name, "sky has zero scatter; pass gain or weightmap")
    sky = ~(ignore | sources)
    fraction = float(sky.sum() / (~ignore).sum())
    if level is not None and fraction < MIN_SKY_FRACTION:
        # A galaxy that fills the cutout leaves no clean sky, and the scatter
        # of what is left holds its light gradient.  Differences of adjacent
        # pixels cancel the smooth galaxy light but keep the noise.
        rms = _difference_rms(pixels, ignore, fallback=float(rms))
    flag = 0
    if level is None:
        edge = np.zeros(pixels.shape, dtype=bool)
        edge[[0, -1], :] = edge[:, [0, -1]] = True
        # A galaxy that reaches the edge has wings in every remaining pixel.
        if fraction < MIN_SKY_FRACTION or _central_touches_edge(sources, edge):
            flag = 1
    return SkyEstimate(sky_level, float(rms), flag, fraction)


def _central_touches_edge(sources: np.ndarray, edge: np.ndarray) -> bool:
    from scipy import ndimage

    from .segmentation import label_nearest_centre

    labels, count = ndimage.label(sources)
    if count == 0:
        return False
    central = label_nearest_centre(labels)
    return bool((edge & (labels == central)).any())


def _difference_rms(pixels: np.ndarray, ignore: np.ndarray, fallback: float) -> float:
    """Noise rms from the median absolute difference of neighbouring pixels.

    For uncorrelated noise the difference of two pixels has rms
    ``sqrt(2) * sigma``; the median absolute deviation (times 1.4826) is
    insensitive to the few differences that a galaxy's core gradient or a
    star makes large.
    """
    good_x = ~(ignore[:, 1:] | ignore[:, :-1])
    good_y = ~(ignore[1:] | ignore[:-1])
    differences = np.concatenate(
        [(pixels[:, 1:] - pixels[:, :-1])[good_x], (pixels[1:] - pixels[:-1])[good_y]]
    )
    if differences.size < 10:
        return fallback
    rms = 1.4826 * float(np.median(np.abs(differences))) / np.sqrt(2.0)
    return rms if rms > 0 else fallback
