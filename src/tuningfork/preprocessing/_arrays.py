"""Input checks shared by the preprocessing steps."""

from __future__ import annotations

import numpy as np

from ..errors import ImageShapeError


def as_float_image(image: np.ndarray, name: str = "image", min_ndim: int = 2) -> np.ndarray:
    """Return ``image`` as float32 after checking that it is a numeric pixel array.

    The result may share memory with the caller's array (no copy when it is
    already float32), so every step builds new arrays instead of writing into it.

    Parameters
    ----------
    image : array_like
        Pixels whose last two axes are (height, width).
    name : str
        What to call the array in error messages (a file name or an id).
    min_ndim : int
        Smallest number of dimensions accepted.

    Returns
    -------
    ndarray
        float32 view or copy of ``image``.

    Raises
    ------
    ImageShapeError
        When the array has too few dimensions, an empty axis or a non-numeric type.
    """
    array = np.asarray(image)
    if array.ndim < min_ndim:
        raise ImageShapeError(
            name,
            f"expected at least {min_ndim} dimensions ending in (height, width), got shape {array.shape}",
        )
    if array.size == 0:
        raise ImageShapeError(name, f"image has an empty axis (shape {array.shape})")
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise ImageShapeError(name, f"pixel type {array.dtype} is not a real number type")
    return array.astype(np.float32, copy=False)


def as_pixel_mask(
    mask: np.ndarray | None, shape: tuple[int, ...], name: str = "mask"
) -> np.ndarray | None:
    """Broadcast a bad-pixel mask to an image shape.

    Parameters
    ----------
    mask : array_like or None
        True (or non-zero, as in FITS masks) where a pixel must be ignored;
        (H, W) masks apply to every band.
    shape : tuple of int
        Shape of the image the mask belongs to.
    name : str
        What to call the mask in error messages.

    Returns
    -------
    ndarray of bool or None
        Read-only broadcast view, or None when ``mask`` is None.

    Raises
    ------
    ImageShapeError
        When the mask cannot be broadcast to ``shape``.
    """
    if mask is None:
        return None
    mask_array = np.asarray(mask) != 0
    try:
        return np.broadcast_to(mask_array, shape)
    except ValueError:
        raise ImageShapeError(
            name, f"shape {mask_array.shape} does not match image shape {shape}"
        ) from None
