"""Polar resampling around the image centre, with an optional angular extension.

In polar coordinates a rotation of the galaxy about the centre becomes a
circular shift along the angle axis.  Appending the first part of the angle
range again after 2 pi (the "extension") lets a convolutional encoder see the
wrapped-around structure without padding tricks, so the features it learns
tolerate rotations, as in the rotation-invariance step of the ConvNeXt
voting-clustering method.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import ConfigError, ImageShapeError
from ._arrays import as_float_image


def _check_grid(n_radii: int, n_angles: int, extension: float) -> None:
    if int(n_radii) != n_radii or int(n_angles) != n_angles or n_radii < 1 or n_angles < 1:
        raise ConfigError(
            f"polar: n_radii ({n_radii}) and n_angles ({n_angles}) must be positive integers"
        )
    if not 0 <= extension <= 1:
        raise ConfigError(f"polar: extension {extension} must be a fraction in [0, 1]")


def extension_columns(n_angles: int, extension: float) -> int:
    """Number of angle columns appended by an angular ``extension``.

    Parameters
    ----------
    n_angles : int
        Samples over one full turn.
    extension : float
        Fraction of the turn repeated after 2 pi.

    Returns
    -------
    int
        ``round(extension * n_angles)``.
    """
    return round(extension * n_angles)


def _default_max_radius(height: int, width: int) -> float:
    return min(height, width) / 2.0


@functools.lru_cache(maxsize=32)
def _polar_sample_points(
    height: int, width: int, n_radii: int, n_angles: int, n_extra: int, max_radius: float
) -> np.ndarray:
    # Cached: a pipeline resamples thousands of stamps on the same grid.
    centre_y, centre_x = (height - 1) / 2.0, (width - 1) / 2.0
    radii = (np.arange(n_radii) + 0.5) * (max_radius / n_radii)
    angles = np.arange(n_angles + n_extra) * (2.0 * np.pi / n_angles)
    rows = centre_y + radii[:, None] * np.sin(angles)[None, :]
    cols = centre_x + radii[:, None] * np.cos(angles)[None, :]
    points = np.stack([rows, cols])
    points.flags.writeable = False
    return points


def _sample_planes(planes: np.ndarray, points: np.ndarray, order: int) -> np.ndarray:
    """Each (H, W) plane interpolated at ``points`` (2, ...), as float32 (n, ...)."""
    # Imported here: scipy.ndimage takes 0.15 s to import, and a process
    # that only predicts (a catalog worker) never samples a polar grid.
    from scipy.ndimage import map_coordinates

    sampled = np.empty((len(planes), *points.shape[1:]), dtype=np.float32)
    for plane, out in zip(planes, sampled):
        map_coordinates(plane, points, output=out, order=order, mode="nearest")
    return sampled


def to_polar(
    image: np.ndarray,
    n_radii: int,
    n_angles: int,
    extension: float = 0.0,
    max_radius: float | None = None,
    order: int = 1,
) -> np.ndarray:
    """Resample an image on a polar grid centred on the image centre.

    Row ``i`` holds radius ``(i + 0.5) * max_radius / n_radii`` pixels and
    column ``j`` angle ``2 pi j / n_angles`` measured from the +x (column)
    axis towards +y (row), so rotating the input by ``np.rot90`` shifts the
    columns by ``-n_angles / 4``.

    Parameters
    ----------
    image : array_like
        (..., H, W) pixels, centred on the galaxy.
    n_radii : int
        Number of radial samples.
    n_angles : int
        Number of angular samples over one full turn.
    extension : float
        Fraction (0-1) of the turn appended again after 2 pi;
        ``extension_columns(n_angles, extension)`` columns are added.
    max_radius : float, optional
        Outer radius in pixels; defaults to half the shorter side (the
        inscribed circle).
    order : int
        Spline order of ``scipy.ndimage.map_coordinates`` (1 = bilinear).

    Returns
    -------
    ndarray
        float32 array (..., n_radii, n_angles + extra columns).
    """
    _check_grid(n_radii, n_angles, extension)
    array = as_float_image(image)
    height, width = array.shape[-2:]
    radius = _default_max_radius(height, width) if max_radius is None else float(max_radius)
    if radius <= 0:
        raise ConfigError(f"to_polar: max_radius {max_radius} must be positive")
    points = _polar_sample_points(
        height, width, int(n_radii), int(n_angles), extension_columns(n_angles, extension), radius
    )
    polar = _sample_planes(array.reshape(-1, height, width), points, order)
    return polar.reshape(*array.shape[:-2], *points.shape[1:])


def from_polar(
    polar: np.ndarray,
    shape: tuple[int, int],
    n_angles: int | None = None,
    max_radius: float | None = None,
    order: int = 1,
) -> np.ndarray:
    """Resample a polar image back onto a Cartesian grid, for display.

    Parameters
    ----------
    polar : array_like
        (..., n_radii, columns) output of :func:`to_polar`.
    shape : (int, int)
        (height, width) of the Cartesian image to produce.
    n_angles : int, optional
        Angular samples over one full turn; columns beyond it are the
        extension and are dropped.  Defaults to all columns (no extension).
    max_radius : float, optional
        Outer radius used by :func:`to_polar`; defaults to half the shorter
        side of ``shape``.
    order : int
        Spline order of ``scipy.ndimage.map_coordinates``.

    Returns
    -------
    ndarray
        float32 array (..., height, width); NaN outside ``max_radius``, where
        the polar image holds no information.

    Raises
    ------
    ImageShapeError
        When ``n_angles`` exceeds the number of columns.
    """
    array = as_float_image(polar, name="polar image")
    n_radii, columns = array.shape[-2:]
    n_angles = columns if n_angles is None else int(n_angles)
    if not 0 < n_angles <= columns:
        raise ImageShapeError(
            "polar image", f"n_angles {n_angles} must be in 1..{columns} (its column count)"
        )
    height, width = (int(side) for side in shape)
    radius = _default_max_radius(height, width) if max_radius is None else float(max_radius)
    if radius <= 0:
        raise ConfigError(f"from_polar: max_radius {max_radius} must be positive")
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float64)
    dy, dx = rows - (height - 1) / 2.0, cols - (width - 1) / 2.0
    distance = np.hypot(dy, dx)
    radial_index = distance * (n_radii / radius) - 0.5
    angular_index = np.mod(np.arctan2(dy, dx), 2.0 * np.pi) * (n_angles / (2.0 * np.pi))
    points = np.stack([radial_index, angular_index])
    outside = distance > radius
    # Repeat angle 0 after the last column so interpolation wraps across 2 pi.
    turn = array[..., :n_angles]
    wrapped = np.concatenate([turn, turn[..., :1]], axis=-1).reshape(-1, n_radii, n_angles + 1)
    image = _sample_planes(wrapped, points, order)
    image[:, outside] = np.nan
    return image.reshape(*array.shape[:-2], height, width)
