"""Centre cropping and anti-aliased resizing of (..., H, W) images."""

from __future__ import annotations

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


def resize(image: np.ndarray, size: int | tuple[int, int]) -> np.ndarray:
    """Resample an image to a new pixel grid with anti-aliasing.

    Bilinear interpolation whose kernel widens when shrinking, so
    downsampling averages instead of aliasing noise and fine structure: PIL's
    resampling of 32-bit float planes, which torch's
    ``interpolate(..., mode="bilinear", antialias=True)`` follows (they agree
    to about 1e-5 of the pixel values).  The image keeps its extent: pixel
    centres map as in ``align_corners=False``.  PIL rather than torch, so
    that preprocessing (a catalog worker, ``predict --engine onnx``) does not
    import torch.

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
    from PIL import Image

    out_height, out_width = _pair(size, "resize")
    array = as_float_image(image)
    if array.shape[-2:] == (out_height, out_width):
        return array.copy()
    planes = array.reshape(-1, *array.shape[-2:])
    resized = np.empty((len(planes), out_height, out_width), dtype=np.float32)
    for index, plane in enumerate(planes):
        # Image.fromarray needs contiguous memory.
        picture = Image.fromarray(np.ascontiguousarray(plane), mode="F")
        resized[index] = np.asarray(picture.resize((out_width, out_height), Image.BILINEAR))
    return resized.reshape(*array.shape[:-2], out_height, out_width)
