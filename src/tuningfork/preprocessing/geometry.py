"""Centre cropping and anti-aliased resizing of (..., H, W) images."""

from __future__ import annotations

import functools

import numpy as np

from ..errors import ConfigError, ImageShapeError
from ._arrays import as_float_image


def _pair(size: int | tuple[int, int], what: str) -> tuple[int, int]:
    try:
        height, width = (size, size) if np.isscalar(size) else size
        valid = int(height) == height and int(width) == width and height >= 1 and width >= 1
    except (TypeError, ValueError):
        valid = False
    if not valid:
        raise ConfigError(
            f"{what}: size {size!r} must be a positive whole number of pixels or a (height, width) pair"
        )
    return int(height), int(width)


def center_crop(
    image: np.ndarray,
    pixels: int | tuple[int, int] | None = None,
    fraction: float | None = None,
    name: str = "image",
) -> np.ndarray:
    """Cut the central region out of an image.

    Give exactly one of ``pixels`` and ``fraction``.  When the size
    difference is odd the extra pixel is dropped on the far side, so a source
    at the centre of an odd-sized stamp stays at the centre of an odd crop.

    Parameters
    ----------
    image : array_like
        (..., H, W) pixels.
    pixels : int or (int, int), optional
        Output (height, width) in pixels; an int gives a square.
    fraction : float, optional
        Output size as a fraction (0, 1] of each input side, rounded to
        whole pixels.
    name : str
        What to call the image in error messages.

    Returns
    -------
    ndarray
        New float32 array (..., h, w).

    Raises
    ------
    ConfigError
        When neither or both sizes are given, or a size is not positive.
    ImageShapeError
        When the crop is larger than the image.
    """
    if (pixels is None) == (fraction is None):
        raise ConfigError("center_crop: give exactly one of pixels and fraction")
    array = as_float_image(image, name=name)
    height, width = array.shape[-2:]
    if fraction is not None:
        if not 0 < fraction <= 1:
            raise ConfigError(f"center_crop: fraction {fraction} must be in (0, 1]")
        out_height, out_width = max(1, round(height * fraction)), max(1, round(width * fraction))
    else:
        out_height, out_width = _pair(pixels, "center_crop")
    if out_height > height or out_width > width:
        raise ImageShapeError(
            name, f"crop {out_height}x{out_width} is larger than the image {height}x{width}"
        )
    top, left = (height - out_height) // 2, (width - out_width) // 2
    return array[..., top : top + out_height, left : left + out_width].copy()


@functools.lru_cache(maxsize=64)
def _resampling_matrix(in_size: int, out_size: int) -> np.ndarray:
    """(out_size, in_size) weights of anti-aliased bilinear resampling along one axis.

    The triangle kernel, widened by the shrink factor when shrinking, each
    output pixel's weights renormalised to one where the image edge clips
    them: the coefficients of PIL's resampling and of torch's
    ``interpolate(..., mode="bilinear", antialias=True, align_corners=False)``.
    """
    scale = in_size / out_size
    support = max(scale, 1.0)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for row in range(out_size):
        centre = scale * (row + 0.5)
        # int() truncates towards zero, as the C code's cast does.
        first = max(int(centre - support + 0.5), 0)
        stop = min(int(centre + support + 0.5), in_size)
        taps = np.arange(first, stop)
        weights = np.clip(1.0 - np.abs((taps - centre + 0.5) / support), 0.0, None)
        if weights.sum() > 0:
            matrix[row, first:stop] = weights / weights.sum()
    matrix = matrix.astype(np.float32)
    matrix.setflags(write=False)
    return matrix


@functools.lru_cache(maxsize=64)
def _halves(in_size: int, out_size: int) -> tuple[tuple[slice, slice, np.ndarray], ...]:
    """The resampling matrix cut into its first and second half of output pixels, each with only the inputs it uses.

    Each half reads about half the input, so the two products cost about
    half the full matrix's, most of whose entries are zero (0.22 against
    0.33 CPU-ms per 212 px RGB stamp to 64 px; torch's kernel: 0.22).
    """
    matrix = _resampling_matrix(in_size, out_size)
    pieces = []
    for outputs in (slice(0, out_size // 2), slice(out_size // 2, out_size)):
        used = np.flatnonzero(matrix[outputs].any(axis=0))
        if len(used):
            inputs = slice(int(used[0]), int(used[-1]) + 1)
            pieces.append((outputs, inputs, np.ascontiguousarray(matrix[outputs, inputs])))
    return tuple(pieces)


@functools.cache
def _blas():
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _resample(planes: np.ndarray, out_height: int, out_width: int, dtype) -> np.ndarray:
    """(n, out_height, out_width) from (n, H, W): columns first, then rows.

    With ``dtype=bool`` the products are logical (which outputs any input pixel reaches).
    """
    count, height, width = planes.shape
    flat = planes.reshape(-1, width)
    across = np.empty((count * height, out_width), dtype=dtype)
    for outputs, inputs, weights in _halves(width, out_width):
        across[:, outputs] = flat[:, inputs] @ (weights.T if dtype is not bool else weights.T != 0)
    across = across.reshape(count, height, out_width)
    resized = np.empty((count, out_height, out_width), dtype=dtype)
    for outputs, inputs, weights in _halves(height, out_height):
        resized[:, outputs] = np.matmul(weights if dtype is not bool else weights != 0, across[:, inputs])
    return resized


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resample an image to a new pixel grid with anti-aliasing.

    Bilinear interpolation whose kernel widens when shrinking, so
    downsampling averages instead of aliasing noise and fine structure, with
    the coefficients of torch's ``interpolate(..., mode="bilinear",
    antialias=True)`` (and of PIL's resampling), applied as matrix products
    over the whole batch (on 212 px RGB stamps to 64 px as fast as torch's
    kernel on one thread, 424 px ones about 1.6 times slower), so that a
    process that only preprocesses and runs ONNX Runtime never imports torch.  The image keeps its extent: pixel centres map as in
    ``align_corners=False``.  A non-finite pixel makes every output pixel
    whose kernel covers it NaN, and no other.

    Parameters
    ----------
    image : array_like
        (..., H, W) pixels.
    size : int or (int, int)
        Output (height, width) in pixels; an int gives a square.

    Returns
    -------
    ndarray
        New float32 array (..., height, width).
    """
    out_height, out_width = _pair(size, "resize")
    array = as_float_image(image)
    height, width = array.shape[-2:]
    if (height, width) == (out_height, out_width):
        return array.copy()
    planes = array.reshape(-1, height, width)
    # One BLAS thread: these products are small, and OpenBLAS's idle threads
    # spin between them, which doubled the CPU time of `predict` (7.3 against
    # 3.9 CPU-s on 1,000 stamps) and made a CPU budget's schedule irregular.
    with _blas().limit(limits=1, user_api="blas"):
        if np.isfinite(planes).all():
            resized = _resample(planes, out_height, out_width, np.float32)
        else:
            finite = np.isfinite(planes)
            resized = _resample(np.where(finite, planes, np.float32(0)), out_height, out_width, np.float32)
            resized[_resample(~finite, out_height, out_width, bool)] = np.nan
    return resized.reshape(*array.shape[:-2], out_height, out_width)
