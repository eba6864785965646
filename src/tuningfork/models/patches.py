"""Cutting images into patch sequences and putting them back together.

An autoregressive model reads an image as a sequence, so the order of the
patches matters: AstroPT reads a spiral from the centre outwards, which puts
the galaxy (always near the centre of a cutout) first and the sky last, so the
first tokens the model sees carry the most information and the prediction of
sky patches is conditioned on the galaxy.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from ..errors import ConfigError

PATCH_ORDERS = ("spiral", "raster")


@lru_cache(maxsize=32)
def _cached_order(rows: int, cols: int, order: str) -> tuple[int, ...]:
    if order == "raster":
        return tuple(range(rows * cols))
    row, col = np.mgrid[0:rows, 0:cols]
    dy = row - (rows - 1) / 2.0
    dx = col - (cols - 1) / 2.0
    ring = np.maximum(np.abs(dy), np.abs(dx))
    # Each ring is walked anticlockwise starting from the same direction, so the
    # step from the end of one ring to the start of the next is short, as in a
    # true spiral, and the centre is read first.
    angle = np.mod(np.arctan2(dy, dx) - np.pi / 4 - 1e-9, 2 * np.pi)
    return tuple(int(i) for i in np.lexsort((angle.ravel(), ring.ravel())))


def patch_order(rows: int, cols: int, order: str = "spiral") -> np.ndarray:
    """Reading order of a grid of patches, as indices into the raster order.

    Parameters
    ----------
    rows, cols : int
        Number of patches along the height and the width.
    order : {"spiral", "raster"}
        ``"spiral"`` reads ring after ring from the centre outwards (AstroPT);
        ``"raster"`` reads row by row.

    Returns
    -------
    ndarray of int64
        A permutation of ``range(rows * cols)``: element ``t`` is the raster
        index of the ``t``-th patch read.
    """
    if order not in PATCH_ORDERS:
        raise ConfigError(
            f"patch order '{order}' is unknown (choose one of {', '.join(PATCH_ORDERS)})"
        )
    if rows < 1 or cols < 1:
        raise ConfigError(f"a patch grid needs at least one row and column, got {rows} x {cols}")
    return np.array(_cached_order(int(rows), int(cols), order), dtype=np.int64)


def _grid(height: int, width: int, patch_size: int) -> tuple[int, int]:
    if patch_size < 1 or height % patch_size or width % patch_size:
        raise ConfigError(
            f"patch size {patch_size} px does not divide the image size {height} x {width} px; "
            "crop or resize the images to a multiple of it"
        )
    return height // patch_size, width // patch_size


def image_to_patches(
    images: torch.Tensor | np.ndarray, patch_size: int, order: str = "spiral"
) -> torch.Tensor:
    """Cut a batch of images into a sequence of flattened patches.

    Parameters
    ----------
    images : Tensor or ndarray
        (batch, bands, height, width); height and width must be multiples of
        ``patch_size``.
    patch_size : int
        Side of a square patch in pixels.
    order : {"spiral", "raster"}
        Reading order, see :func:`patch_order`.

    Returns
    -------
    Tensor
        (batch, n_patches, bands * patch_size**2); each patch is flattened
        band-major (all pixels of band 0, then band 1...).  A new tensor: the
        input is not modified.
    """
    images = torch.as_tensor(images)
    if images.ndim != 4:
        raise ConfigError(
            f"expected a (batch, bands, height, width) array, got shape {tuple(images.shape)}"
        )
    batch, bands, height, width = images.shape
    rows, cols = _grid(height, width, patch_size)
    patches = images.reshape(batch, bands, rows, patch_size, cols, patch_size)
    patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(batch, rows * cols, bands * patch_size**2)
    index = torch.from_numpy(patch_order(rows, cols, order)).to(patches.device)
    return patches[:, index].clone()


def patches_to_image(
    patches: torch.Tensor | np.ndarray,
    image_shape: tuple[int, int, int],
    patch_size: int,
    order: str = "spiral",
) -> torch.Tensor:
    """Invert :func:`image_to_patches`.

    Parameters
    ----------
    patches : Tensor or ndarray
        (batch, n_patches, bands * patch_size**2) in the given ``order``.
    image_shape : tuple of int
        (bands, height, width) of one image in pixels.
    patch_size : int
        Side of a square patch in pixels.
    order : {"spiral", "raster"}
        The order the patches were read in.

    Returns
    -------
    Tensor
        (batch, bands, height, width).
    """
    patches = torch.as_tensor(patches)
    bands, height, width = image_shape
    rows, cols = _grid(height, width, patch_size)
    expected = (rows * cols, bands * patch_size**2)
    if patches.ndim != 3 or tuple(patches.shape[1:]) != expected:
        raise ConfigError(
            f"patch tensor of shape {tuple(patches.shape)} does not fit images of shape "
            f"{tuple(image_shape)} with {patch_size} px patches "
            f"(expected (batch, {expected[0]}, {expected[1]}))"
        )
    inverse = torch.from_numpy(np.argsort(patch_order(rows, cols, order))).to(patches.device)
    raster = patches[:, inverse]
    batch = raster.shape[0]
    images = raster.reshape(batch, rows, cols, bands, patch_size, patch_size)
    return images.permute(0, 3, 1, 4, 2, 5).reshape(batch, bands, height, width).contiguous()
