"""Rotation-invariant morphology descriptors: the default encoder of the clustering.

Without pretrained weights (nothing is downloaded), a randomly initialised
ConvNeXt groups galaxies by brightness and noise rather than by shape.  This
encoder instead measures what astronomers classify by, for a whole batch at
once (about a millisecond per galaxy, where statmorph takes about a second):

* light profile: half-light radius, concentration ``C = 5 log10(r80 / r20)``,
  ``r90 / r50`` and the growth curve at fixed multiples of ``r50``;
* non-parametric statistics in the spirit of statmorph: ellipticity (second
  moments), rotational asymmetry, smoothness (clumpiness), Gini and M20;
* with ``angular=True`` (the pipeline's polar step): the image is resampled on
  a polar grid around the galaxy and Fourier transformed along the angle.  The
  amplitude of mode ``m`` in rings scaled to ``r50`` measures lopsidedness
  (m = 1), elongation and bars (m = 2) and arms (m = 2-4); the phase drift of
  m = 2 from ring to ring measures how the arms wind.  Amplitudes do not
  depend on the orientation (a rotation only shifts the phases), and the
  absolute phase drift does not depend on the arms' handedness;
* colour gradients between the core and the disk, for multi-band images.

Every quantity is a ratio, so a descriptor does not change when an image is
scaled, and radii are in units of the galaxy's own ``r50``.  Noise still
biases some of them (faint galaxies look clumpier and more asymmetric):
:class:`tuningfork.clustering.trend.SnrTrend` removes, over a whole data set,
the part of each descriptor that a quadratic in log S/N explains, so groups
follow morphology rather than brightness.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ...errors import ConfigError, ImageShapeError
from ...preprocessing import PreprocessConfig
from ...preprocessing.noise import estimate_noise_sigma
from ..encoder import Encoder
from ..registry import MORPHOLOGY_ENCODER, register_model

#: Growth-curve samples, in half-light radii.
GROWTH_RADII = (0.25, 0.5, 1.5, 2.0, 3.0)
#: Edges of the rings of the angular Fourier modes, in half-light radii; rings
#: further out are dominated by sky noise at survey depths.
RING_EDGES = (0.0, 0.5, 1.0, 1.5, 2.5)
# Pixels of the stamp border whose median is the sky level.
_SKY_BORDER = 4
# Centring: width of the Gaussian window (fraction of the stamp side), and
# how far from the stamp centre the galaxy may be found (fraction of the side).
_CENTRE_WINDOW = 1 / 8
_CENTRE_RANGE = 1 / 4
# statmorph's apertures, in half-light radii: Gini within 2 r50 (about the
# Petrosian radius of a disk), asymmetry, smoothness and M20 within 1.5 r90.
_GINI_RADIUS = 2.0
_TOTAL_RADIUS_R90 = 1.5
# Smoothing scale of the smoothness (clumpiness), in units of r90 (Conselice 2003: 0.25 r_petro).
_SMOOTHING_R90 = 0.25
_SMOOTHING_STEP = 0.5
# Unit-noise realisations averaged to tabulate the noise power of the polar grid.
_NOISE_REALISATIONS = 16
_TINY = 1e-12


@dataclass(frozen=True)
class MorphologyDescriptors:
    """Descriptors of a batch of galaxies.

    Attributes
    ----------
    values : ndarray
        float32 (n_galaxies, n_descriptors), finite.
    names : tuple of str
        Name of each column.
    log_snr : ndarray
        float64 (n_galaxies,) natural log of the signal-to-noise ratio inside
        2 r50 (the flux over the noise of the pixels summed).
    """

    values: np.ndarray
    names: tuple[str, ...]
    log_snr: np.ndarray


def _check_batch(images: np.ndarray) -> np.ndarray:
    array = np.asarray(images)
    if array.ndim != 4:
        raise ImageShapeError(
            "morphology descriptors", f"expected a (n, bands, H, W) stack, got shape {array.shape}"
        )
    if min(array.shape[-2:]) < 4 * _SKY_BORDER:
        raise ImageShapeError(
            "morphology descriptors",
            f"images of {array.shape[-2]} x {array.shape[-1]} pixels are too small "
            f"(at least {4 * _SKY_BORDER} per side)",
        )
    if not np.isfinite(array).all():
        raise ImageShapeError(
            "morphology descriptors", "images hold NaN or inf pixels; fill them in preprocessing"
        )
    return array.astype(np.float64)


def _border(planes: np.ndarray) -> np.ndarray:
    """Pixels of the outer frame of every (..., H, W) plane, flattened per plane."""
    b = _SKY_BORDER
    lead = planes.shape[:-2]
    return np.concatenate(
        [
            planes[..., :b, :].reshape(*lead, -1),
            planes[..., -b:, :].reshape(*lead, -1),
            planes[..., b:-b, :b].reshape(*lead, -1),
            planes[..., b:-b, -b:].reshape(*lead, -1),
        ],
        axis=-1,
    )


def _centres(light: np.ndarray, iterations: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Light-weighted centre inside a Gaussian window that follows it."""
    n, height, width = light.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    middle_y, middle_x = (height - 1) / 2.0, (width - 1) / 2.0
    centre_y, centre_x = np.full(n, middle_y), np.full(n, middle_x)
    # Smoothing first keeps single noise spikes from pulling the centre.
    positive = np.clip(ndimage.gaussian_filter(light, (0, 1, 1)), 0, None)
    window = _CENTRE_WINDOW * min(height, width)
    for _ in range(iterations):
        distance2 = (rows - centre_y[:, None, None]) ** 2 + (cols - centre_x[:, None, None]) ** 2
        weights = positive * np.exp(-distance2 / (2 * window**2))
        total = weights.sum(axis=(1, 2)) + _TINY
        centre_y = (weights * rows).sum(axis=(1, 2)) / total
        centre_x = (weights * cols).sum(axis=(1, 2)) / total
    reach = _CENTRE_RANGE * min(height, width)
    return (
        np.clip(centre_y, middle_y - reach, middle_y + reach),
        np.clip(centre_x, middle_x - reach, middle_x + reach),
    )


def _polar(
    light: np.ndarray, centre_y, centre_x, n_radii: int, n_angles: int, max_radius: float
) -> np.ndarray:
    """(n, n_radii, n_angles) samples on rings of radius (i + 0.5) max_radius / n_radii."""
    radii = (np.arange(n_radii) + 0.5) * (max_radius / n_radii)
    angles = np.arange(n_angles) * (2 * np.pi / n_angles)
    rows = centre_y[:, None, None] + radii[None, :, None] * np.sin(angles)[None, None, :]
    cols = centre_x[:, None, None] + radii[None, :, None] * np.cos(angles)[None, None, :]
    index = np.broadcast_to(np.arange(light.shape[0])[:, None, None], rows.shape)
    return ndimage.map_coordinates(light, np.stack([index, rows, cols]), order=1, mode="nearest")


@functools.lru_cache(maxsize=8)
def _unit_noise_power(
    height: int, width: int, n_radii: int, n_angles: int, max_radius: float
) -> np.ndarray:
    """Mean power of the angular modes m >= 1 of unit white noise, per ring.

    Interpolation correlates neighbouring polar samples (strongly at small
    radii), so the noise power per ring is measured on noise images sampled
    exactly like the galaxies rather than derived.
    """
    noise = np.random.default_rng(0).standard_normal((_NOISE_REALISATIONS, height, width))
    centre = (
        np.full(_NOISE_REALISATIONS, (height - 1) / 2.0),
        np.full(_NOISE_REALISATIONS, (width - 1) / 2.0),
    )
    modes = np.fft.rfft(_polar(noise, *centre, n_radii, n_angles, max_radius), axis=-1) / n_angles
    power = (np.abs(modes[..., 1:]) ** 2).mean(axis=(0, 2))
    power.flags.writeable = False
    return power


def _interpolate_rows(table: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of each row of ``table`` at fractional column ``positions``."""
    columns = table.shape[1]
    position = np.clip(positions, 0, columns - 1)
    low = np.minimum(np.floor(position).astype(int), columns - 2)
    weight = position - low
    left = np.take_along_axis(table, low, axis=1)
    right = np.take_along_axis(table, low + 1, axis=1)
    return left + weight * (right - left)


def _radii_enclosing(growth_fraction: np.ndarray, edges: np.ndarray, fractions) -> np.ndarray:
    """Radius (pixels) inside which each galaxy has each fraction of its light."""
    # Noise makes the growth curve wiggle; its running maximum is monotonic.
    monotonic = np.maximum.accumulate(growth_fraction, axis=1)
    out = np.empty((monotonic.shape[0], len(fractions)))
    for column, fraction in enumerate(fractions):
        above = (monotonic < fraction).sum(axis=1)  # first ring reaching the fraction
        upper = np.clip(above, 0, monotonic.shape[1] - 1)
        lower_fraction = np.where(
            upper > 0, np.take_along_axis(monotonic, np.maximum(upper - 1, 0)[:, None], 1)[:, 0], 0
        )
        upper_fraction = np.take_along_axis(monotonic, upper[:, None], 1)[:, 0]
        step = np.clip(
            (fraction - lower_fraction) / (upper_fraction - lower_fraction + _TINY), 0, 1
        )
        out[:, column] = edges[upper] + step * (edges[upper + 1] - edges[upper])
    return np.clip(out, edges[1] / 2, edges[-1])


def _gini(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """Gini coefficient of |values| over the pixels ``inside`` each galaxy's aperture (Lotz 2004)."""
    n = values.shape[0]
    flat = np.where(inside, np.abs(values), np.nan).reshape(n, -1)
    ordered = np.sort(flat, axis=1)  # NaN (outside) sorts last
    count = inside.reshape(n, -1).sum(axis=1)
    rank = np.arange(1, ordered.shape[1] + 1)[None, :]
    weighted = np.nansum((2 * rank - count[:, None] - 1) * ordered, axis=1)
    mean = np.nansum(ordered, axis=1) / np.maximum(count, 1)
    return weighted / np.maximum(mean * count * (count - 1), _TINY)


def _m20(values: np.ndarray, inside: np.ndarray, distance2: np.ndarray) -> np.ndarray:
    """log10 of the second moment of the brightest 20 % of the light over the total (Lotz 2004)."""
    n = values.shape[0]
    flux = np.where(inside, values, 0.0).reshape(n, -1)
    moment = flux * distance2.reshape(n, -1)
    order = np.argsort(-flux, axis=1)
    cumulative = np.cumsum(np.take_along_axis(flux, order, axis=1), axis=1)
    in_brightest = cumulative - np.take_along_axis(flux, order, axis=1) < 0.2 * cumulative[:, -1:]
    brightest = (np.take_along_axis(moment, order, axis=1) * in_brightest).sum(axis=1)
    return np.log10(np.maximum(brightest, _TINY) / np.maximum(moment.sum(axis=1), _TINY))


def _smoothness(values: np.ndarray, inside: np.ndarray, width: np.ndarray) -> np.ndarray:
    """Fraction of the light in structure finer than ``width`` pixels (clumpiness)."""
    # Widths quantised to half pixels let galaxies of similar size share one filter call.
    steps = np.maximum(np.round(width / _SMOOTHING_STEP), 2) * _SMOOTHING_STEP
    residual = np.empty(values.shape)
    for step in np.unique(steps):
        chosen = steps == step
        smooth = ndimage.gaussian_filter(values[chosen], (0, step, step))
        residual[chosen] = np.clip(values[chosen] - smooth, 0, None)
    light = np.abs(np.where(inside, values, 0.0)).sum(axis=(1, 2))
    return np.where(inside, residual, 0.0).sum(axis=(1, 2)) / np.maximum(light, _TINY)


def _angular_descriptors(
    light, centre_y, centre_x, r50, sigma, n_radii, n_angles, max_radius, n_modes
):
    """Amplitudes of angular Fourier modes in rings, and the winding of m = 2."""
    height, width = light.shape[-2:]
    samples = _polar(light, centre_y, centre_x, n_radii, n_angles, max_radius)
    modes = np.fft.rfft(samples, axis=-1) / n_angles  # (n, rings, m)
    power = np.abs(modes) ** 2
    # Noise adds its own power to every mode; remove its expectation.
    noise = _unit_noise_power(height, width, n_radii, n_angles, float(max_radius))
    power[..., 1:] -= sigma[:, None, None] ** 2 * noise[None, :, None]
    radii = (np.arange(n_radii) + 0.5) * (max_radius / n_radii)
    columns, names = [], []
    for ring, (inner, outer) in enumerate(itertools.pairwise(RING_EDGES)):
        members = (radii[None, :] >= inner * r50[:, None]) & (radii[None, :] < outer * r50[:, None])
        # A ring thinner than the grid spacing still gets its nearest radius.
        middle = 0.5 * (inner + outer) * r50
        members[np.arange(len(r50)), np.abs(radii[None, :] - middle[:, None]).argmin(axis=1)] = True
        area = members * radii[None, :]
        mean_power = (power[..., 0] * area).sum(axis=1) + _TINY
        for m in range(1, n_modes + 1):
            ratio = np.clip((power[..., m] * area).sum(axis=1), 0, None) / mean_power
            columns.append(np.sqrt(ratio))
            names.append(f"mode{m}_ring{ring}")
        # Phase drift of m = 2 between neighbouring radii, weighted by how
        # coherent it is: large for wound arms, ~0 for bars and ellipses.
        pairs = modes[:, 1:, 2] * np.conj(modes[:, :-1, 2]) * members[:, 1:]
        coherence = np.abs(pairs.sum(axis=1)) / (np.abs(pairs).sum(axis=1) + _TINY)
        columns.append(np.abs(np.angle(pairs.sum(axis=1))) * coherence)
        names.append(f"winding2_ring{ring}")
    return columns, names


def describe_morphology(
    images: np.ndarray,
    *,
    angular: bool = True,
    n_radii: int = 32,
    n_angles: int = 64,
    n_modes: int = 4,
) -> MorphologyDescriptors:
    """Measure rotation-invariant morphology descriptors of a batch of galaxies.

    Parameters
    ----------
    images : ndarray
        (n, bands, H, W) images with the galaxy near the centre, any
        intensity scale (each band's sky, the median of a 4-pixel border, is
        subtracted first); not modified.
    angular : bool
        Add the angular Fourier modes measured on a polar grid (the polar step).
    n_radii, n_angles : int
        Polar grid: rings out to the inscribed circle, samples per ring.
    n_modes : int
        Highest angular mode m.

    Returns
    -------
    MorphologyDescriptors

    Raises
    ------
    ImageShapeError
        For a stack that is not 4-D, too small, or holds NaN/inf.
    ConfigError
        For a polar grid too coarse for the requested modes.
    """
    if n_radii < 4 or n_angles < 2 * n_modes + 2 or n_modes < 1:
        raise ConfigError(
            f"morphology descriptors: need n_radii >= 4, n_modes >= 1 and n_angles >= "
            f"2 n_modes + 2 (got {n_radii}, {n_modes}, {n_angles})"
        )
    pixels = _check_batch(images)
    n, bands, height, width = pixels.shape
    bands_sky = np.median(_border(pixels), axis=-1)
    pixels = pixels - bands_sky[..., None, None]
    # Each band on a common scale before they are summed, so that the
    # descriptors do not change when one band alone is rescaled (as per-band
    # min-max normalisation or a colour composite's stretch does).
    band_scale = pixels.std(axis=(2, 3))
    pixels = pixels / np.where(band_scale > 0, band_scale, 1.0)[..., None, None]
    light = pixels.mean(axis=1)
    sigma = estimate_noise_sigma(light[:, None]).astype(np.float64)
    centre_y, centre_x = _centres(light)

    max_radius = min(height, width) / 2.0 - 1.0
    ring_radii = (np.arange(n_radii) + 0.5) * (max_radius / n_radii)
    ring_width = max_radius / n_radii
    profile = _polar(light, centre_y, centre_x, n_radii, n_angles, max_radius).mean(axis=-1)
    growth = np.cumsum(profile * 2 * np.pi * ring_radii * ring_width, axis=1)
    total = np.maximum(growth.max(axis=1), _TINY)
    fraction = growth / total[:, None]
    edges = np.arange(n_radii + 1) * ring_width
    r20, r50, r80, r90 = _radii_enclosing(fraction, edges, (0.2, 0.5, 0.8, 0.9)).T
    growth_at = _interpolate_rows(
        fraction, np.asarray(GROWTH_RADII)[None, :] * r50[:, None] / ring_width - 1.0
    )

    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    dy = rows[None] - centre_y[:, None, None]
    dx = cols[None] - centre_x[:, None, None]
    distance2 = dy**2 + dx**2
    gini_aperture = distance2 <= (_GINI_RADIUS * r50[:, None, None]) ** 2
    total_aperture = distance2 <= (_TOTAL_RADIUS_R90 * r90[:, None, None]) ** 2
    positive = np.clip(light, 0, None)
    moments_weight = np.where(gini_aperture, positive, 0.0) * np.exp(
        -distance2 / (2 * (1.5 * r50[:, None, None]) ** 2)
    )
    weight_sum = moments_weight.sum(axis=(1, 2)) + _TINY
    qxx = (moments_weight * dx * dx).sum(axis=(1, 2)) / weight_sum
    qyy = (moments_weight * dy * dy).sum(axis=(1, 2)) / weight_sum
    qxy = (moments_weight * dx * dy).sum(axis=(1, 2)) / weight_sum
    ellipticity = np.hypot(qxx - qyy, 2 * qxy) / (qxx + qyy + _TINY)

    # Rotation by 180 degrees about each galaxy's own (sub-pixel) centre.
    index = np.broadcast_to(np.arange(n)[:, None, None], dy.shape)
    rotated = ndimage.map_coordinates(
        light, np.stack([index, rows[None] - 2 * dy, cols[None] - 2 * dx]), order=1, mode="nearest"
    )
    absolute_light = np.abs(np.where(total_aperture, light, 0.0)).sum(axis=(1, 2))
    asymmetry = np.where(total_aperture, np.abs(light - rotated), 0.0).sum(axis=(1, 2)) / (
        2 * np.maximum(absolute_light, _TINY)
    )

    columns = [
        np.log(r50),
        5 * np.log10(r80 / r20),
        np.log(r90 / r50),
        *growth_at.T,
        ellipticity,
        asymmetry,
        _smoothness(light, total_aperture, _SMOOTHING_R90 * r90),
        _gini(light, gini_aperture),
        _m20(light, total_aperture, distance2),
    ]
    names = [
        "log_r50",
        "concentration",
        "log_r90_over_r50",
        *(f"growth_{radius:g}r50" for radius in GROWTH_RADII),
        "ellipticity",
        "asymmetry",
        "smoothness",
        "gini",
        "m20",
    ]
    if angular:
        angular_columns, angular_names = _angular_descriptors(
            light, centre_y, centre_x, r50, sigma, n_radii, n_angles, max_radius, n_modes
        )
        columns += angular_columns
        names += angular_names
    if bands > 1:
        # Core-to-disk light ratio of each band over that of the reddest band:
        # unchanged by any per-band scaling, such as min-max normalisation.
        core = distance2 <= (r50**2)[:, None, None]
        disk = ~core & gini_aperture
        core_light = np.clip(np.where(core[:, None], pixels, 0.0).sum(axis=(2, 3)), _TINY, None)
        disk_light = np.clip(np.where(disk[:, None], pixels, 0.0).sum(axis=(2, 3)), _TINY, None)
        gradient = np.log(core_light / disk_light)
        for band in range(bands - 1):
            columns.append(gradient[:, band] - gradient[:, -1])
            names.append(f"colour_gradient_{band}")

    flux = np.where(gini_aperture, light, 0.0).sum(axis=(1, 2))
    noise = sigma * np.sqrt(gini_aperture.sum(axis=(1, 2)))
    log_snr = np.log(np.clip(flux / np.maximum(noise, _TINY), 1e-3, None))
    values = np.nan_to_num(np.stack(columns, axis=1), nan=0.0, posinf=0.0, neginf=0.0)
    return MorphologyDescriptors(values.astype(np.float32), tuple(names), log_snr)


class MorphologyEncoder(Encoder):
    """:func:`describe_morphology` as an encoder: a network without weights.

    ``encode`` returns the raw descriptors of a batch; the clustering
    pipeline collects them for the whole data set with :meth:`descriptors`
    and fits their S/N trend (:class:`tuningfork.clustering.trend.SnrTrend`),
    which needs every galaxy at once.

    Parameters
    ----------
    angular : bool
        Include the polar-grid angular Fourier modes.
    n_radii, n_angles, n_modes : int
        See :func:`describe_morphology`.
    bands : int
        Bands of the images, which sets :attr:`dim` (one colour gradient per
        band after the first).
    preprocess : PreprocessConfig, optional
        Preprocessing of its images when used on its own (``tuningfork
        embed``); the default ``PreprocessConfig()``.  The clustering
        pipeline applies its own.
    """

    def __init__(
        self,
        angular: bool = True,
        n_radii: int = 32,
        n_angles: int = 64,
        n_modes: int = 4,
        bands: int = 1,
        preprocess: PreprocessConfig | None = None,
    ):
        self.bands = bands
        self.preprocess = preprocess or PreprocessConfig()
        self.angular = angular
        self.n_radii = n_radii
        self.n_angles = n_angles
        self.n_modes = n_modes
        self.name = MORPHOLOGY_ENCODER

    def descriptors(self, images: np.ndarray) -> MorphologyDescriptors:
        """Descriptors, their names and log S/N of (n, bands, H, W) images (any number of bands)."""
        return describe_morphology(
            images,
            angular=self.angular,
            n_radii=self.n_radii,
            n_angles=self.n_angles,
            n_modes=self.n_modes,
        )

    @property
    def dim(self) -> int:
        """Number of descriptors of images with :attr:`bands` bands."""
        radial = 8 + len(GROWTH_RADII)
        angular = (len(RING_EDGES) - 1) * (self.n_modes + 1) if self.angular else 0
        return radial + angular + self.bands - 1

    def encode(self, images: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        """Raw descriptors, float32 (n, dim), of (n, bands, H, W) images (``sed`` is ignored)."""
        images = np.asarray(images)
        if images.ndim == 4 and images.shape[1] != self.bands:
            raise ImageShapeError(
                "morphology encoder input", f"{images.shape[1]} bands but the encoder expects {self.bands}"
            )
        return self.descriptors(images).values


@register_model(MORPHOLOGY_ENCODER)
def morphology(num_outputs: int = 0, in_channels: int = 1, image_size: int | None = None, **options) -> MorphologyEncoder:
    """Registry constructor of the weightless :class:`MorphologyEncoder`.

    Parameters
    ----------
    num_outputs, image_size : int
        Ignored: the descriptors suit any image size.
    in_channels : int
        Bands of the images (sets the dimension).
    **options
        ``angular``, ``n_radii``, ``n_angles``, ``n_modes``, ``preprocess``.

    Returns
    -------
    MorphologyEncoder
    """
    return MorphologyEncoder(bands=in_channels, **options)
