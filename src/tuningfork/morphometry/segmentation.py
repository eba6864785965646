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

from ..errors import EmptyImageError, ImageShapeError, NoSourcesError
from .sky import estimate_sky


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
        Sky level subtracted (see :func:`~tuningfork.morphometry.sky.estimate_sky`),
        in image units.
    background_rms : float
        Per-pixel scatter of the sky, in image units.
    sky_flag : int
        0 for a trusted sky; 1 when too little source-free sky was left or
        the galaxy reaches the cutout edge (see :class:`SkyEstimate`).
    """

    image: np.ndarray
    segmap: np.ndarray
    mask: np.ndarray
    background: float
    background_rms: float
    sky_flag: int = 0


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
    mask: np.ndarray | None = None,
    sky: float | None = None,
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
    mask : ndarray, optional
        bool map of bad pixels (e.g. a survey's mask), left out of the sky
        and of every source, and masked in the result.
    sky : float, optional
        Known sky level (0 for an image already sky-subtracted).  By
        default it is measured on the source-free pixels
        (:func:`~tuningfork.morphometry.sky.estimate_sky`).
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
    from astropy.utils.exceptions import AstropyUserWarning
    from photutils.segmentation import detect_sources, make_2dgaussian_kernel
    from photutils.utils.exceptions import NoDetectionsWarning

    pixels = np.array(image, dtype=np.result_type(np.asarray(image).dtype, np.float32))
    if pixels.ndim != 2:
        raise ImageShapeError(name, f"morphometry needs a 2-D image, got shape {pixels.shape}")
    invalid = ~np.isfinite(pixels)
    if invalid.all():
        raise EmptyImageError(name, "no finite pixel")
    if mask is not None:
        bad = np.asarray(mask, dtype=bool)
        if bad.shape != pixels.shape:
            raise ImageShapeError(name, f"mask shape {bad.shape} differs from image {pixels.shape}")
        invalid = invalid | bad
    estimate = estimate_sky(pixels, mask=invalid, level=sky, name=name)
    background, background_rms = estimate.level, estimate.rms
    pixels -= background
    pixels[invalid] = 0.0

    kernel_size = 2 * int(np.ceil(2 * smoothing_fwhm)) + 1
    kernel = make_2dgaussian_kernel(smoothing_fwhm, size=kernel_size)
    with warnings.catch_warnings():
        # A large masked region (a survey mask) leaves NaN after the
        # interpolation; those pixels are masked in the detection anyway.
        warnings.simplefilter("ignore", AstropyUserWarning)
        smoothed = convolve(pixels, kernel, mask=invalid)
    smoothed = np.where(np.isfinite(smoothed), smoothed, 0.0)
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
    return CentralSource(
        pixels, segmap, mask, float(background), float(background_rms), estimate.flag
    )
