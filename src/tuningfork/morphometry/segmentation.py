"""Find the galaxy at the centre of a cutout with photutils.

statmorph needs a segmentation map of the galaxy to measure and works on a
background-subtracted image.  A survey cutout also holds neighbours; they are
masked rather than merged, so they do not inflate the galaxy's asymmetry.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..errors import EmptyImageError, ImageShapeError, InputFileError, NoSourcesError


@dataclass(frozen=True)
class CentralSource:
    """The central galaxy of a cutout, ready for statmorph.

    Attributes
    ----------
    image : ndarray
        Background-subtracted copy of the input (same float precision;
        non-finite pixels set to 0 and masked).
    segmap : ndarray
        int32 map: 1 on the central galaxy, 0 elsewhere.
    mask : ndarray
        bool map of pixels statmorph must ignore: other sources and
        non-finite pixels.
    background : float
        Sigma-clipped median of the sky, in image units.
    background_rms : float
        Sigma-clipped standard deviation of the sky, in image units.
    """

    image: np.ndarray
    segmap: np.ndarray
    mask: np.ndarray
    background: float
    background_rms: float


def label_nearest_centre(labels: np.ndarray) -> int:
    """Return the label of the segment closest to the image centre.

    Parameters
    ----------
    labels : ndarray
        Integer segmentation map (0 = background) with at least one segment.

    Returns
    -------
    int
        The label under the central pixel, or else the label whose nearest
        pixel is closest to the centre.
    """
    height, width = labels.shape
    yy, xx = np.indices(labels.shape)
    distance = np.hypot(yy - (height - 1) / 2.0, xx - (width - 1) / 2.0)
    present = np.unique(labels[labels > 0])
    nearest = ndimage.minimum(distance, labels=labels, index=present)
    return int(present[int(np.argmin(nearest))])


def segment_central_source(
    image: np.ndarray,
    *,
    nsigma: float = 1.5,
    min_pixels: int = 10,
    smoothing_fwhm: float = 2.0,
    name: str = "image",
) -> CentralSource:
    """Detect sources with photutils and keep the one at the centre.

    Parameters
    ----------
    image : ndarray
        2-D image in any flux unit, sky not necessarily subtracted.
    nsigma : float
        Detection threshold above the sky, in units of the sky rms.
    min_pixels : int
        Minimum number of connected pixels of a source.
    smoothing_fwhm : float
        FWHM of the Gaussian that smooths the image before detection, in
        pixels; it suppresses detections of single noise peaks.
    name : str
        Name of the image (file or id), used in error messages.

    Returns
    -------
    CentralSource
        Background-subtracted image, segmentation map of the central galaxy,
        and mask of everything else.

    Raises
    ------
    ImageShapeError
        If the image is not 2-D.
    EmptyImageError
        If no pixel is finite.
    NoSourcesError
        If nothing is detected.
    InputFileError
        If the sky has zero scatter.
    """
    from astropy.convolution import convolve
    from astropy.stats import sigma_clipped_stats
    from photutils.segmentation import detect_sources, make_2dgaussian_kernel
    from photutils.utils.exceptions import NoDetectionsWarning

    pixels = np.array(image, dtype=np.result_type(np.asarray(image).dtype, np.float32))
    if pixels.ndim != 2:
        raise ImageShapeError(name, f"morphometry needs a 2-D image, got shape {pixels.shape}")
    invalid = ~np.isfinite(pixels)
    if invalid.all():
        raise EmptyImageError(name, "no finite pixel")
    _, background, background_rms = sigma_clipped_stats(pixels, mask=invalid, sigma=3.0)
    if not background_rms > 0:
        raise InputFileError(name, "sky has zero scatter; cannot set a detection threshold")
    pixels -= background
    pixels[invalid] = 0.0

    kernel_size = 2 * int(np.ceil(2 * smoothing_fwhm)) + 1
    kernel = make_2dgaussian_kernel(smoothing_fwhm, size=kernel_size)
    smoothed = convolve(pixels, kernel, mask=invalid)
    with warnings.catch_warnings():
        # An empty detection is reported below as a NoSourcesError instead.
        warnings.simplefilter("ignore", NoDetectionsWarning)
        segments = detect_sources(
            smoothed, nsigma * background_rms, n_pixels=min_pixels, mask=invalid
        )
    if segments is None:
        raise NoSourcesError(name, f"no source detected {nsigma} sigma above the sky")
    labels = segments.data
    central = label_nearest_centre(labels)
    segmap = (labels == central).astype(np.int32)
    mask = invalid | ((labels > 0) & (labels != central))
    return CentralSource(pixels, segmap, mask, float(background), float(background_rms))
