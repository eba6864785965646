"""The dihedral group D4: the 8 rotations by multiples of 90 degrees and flips.

A galaxy's class does not change under these symmetries, and on a square
pixel grid they are exact (no interpolation), so they serve both training
augmentation and test-time augmentation (average the predictions over the 8).

An element is an int ``g`` in 0..7 with ``rotations = g % 4`` and
``flip = g // 4``: the image is first mirrored left-right if ``flip`` is 1,
then rotated ``rotations`` times by 90 degrees as ``np.rot90`` does (from the
row axis towards the column axis).  Element 0 is the identity.  The same
functions exist for numpy arrays (..., H, W) and torch tensors (..., H, W),
such as (B, H, W) images and (N, C, H, W) batches, and give identical results.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

D4_ORDER = 8
D4_ELEMENTS = tuple(range(D4_ORDER))


def d4_element(rotations: int, flip: bool) -> int:
    """Return the element that flips (if ``flip``) then rotates ``rotations`` x 90 degrees.

    Parameters
    ----------
    rotations : int
        Number of quarter turns; any integer, taken modulo 4.
    flip : bool
        Whether to mirror left-right first.

    Returns
    -------
    int
        The element, 0..7.
    """
    return int(rotations) % 4 + 4 * int(bool(flip))


def _check_element(element: int) -> tuple[int, int]:
    if (
        isinstance(element, bool)
        or not isinstance(element, (int, np.integer))
        or not 0 <= element < D4_ORDER
    ):
        raise ConfigError(f"D4: element {element!r} must be an integer in 0..7")
    return int(element) % 4, int(element) // 4


def d4_compose(second: int, first: int) -> int:
    """Return the element equal to applying ``first`` and then ``second``.

    Parameters
    ----------
    second, first : int
        Elements 0..7.

    Returns
    -------
    int
        ``g`` with ``d4_apply(x, g) == d4_apply(d4_apply(x, first), second)``.
    """
    rotations_2, flip_2 = _check_element(second)
    rotations_1, flip_1 = _check_element(first)
    # A mirror reverses the sense of the rotations done before it:
    # F R^k = R^-k F.
    rotations = rotations_2 - rotations_1 if flip_2 else rotations_2 + rotations_1
    return d4_element(rotations, flip_1 ^ flip_2)


def d4_inverse(element: int) -> int:
    """Return the element that undoes ``element``.

    Parameters
    ----------
    element : int
        Element 0..7.

    Returns
    -------
    int
        ``h`` with ``d4_compose(h, element) == 0``.
    """
    rotations, flip = _check_element(element)
    # Pure rotations invert by turning back; every flip-then-rotate is a mirror
    # about some axis, hence its own inverse.
    return element if flip else d4_element(-rotations, False)


def d4_apply(images: np.ndarray, element: int) -> np.ndarray:
    """Apply a D4 element to the last two axes of a numpy array.

    Parameters
    ----------
    images : ndarray
        (..., H, W) array, e.g. (bands, H, W) or (N, bands, H, W).
    element : int
        Element 0..7.

    Returns
    -------
    ndarray
        New contiguous array; (..., W, H) for odd rotations.
    """
    rotations, flip = _check_element(element)
    array = np.asarray(images)
    if flip:
        array = array[..., ::-1]
    return np.rot90(array, rotations, axes=(-2, -1)).copy()


def d4_apply_torch(images, element: int):
    """Apply a D4 element to the last two axes of a torch tensor.

    Parameters
    ----------
    images : torch.Tensor
        (..., H, W) tensor, e.g. (N, C, H, W); gradients flow through.
    element : int
        Element 0..7.

    Returns
    -------
    torch.Tensor
        New tensor, equal to :func:`d4_apply` on the same values.
    """
    rotations, flip = _check_element(element)
    if flip:
        images = images.flip(-1)
    return images.rot90(rotations, dims=(-2, -1))


def d4_apply_each(images, elements):
    """Apply a different D4 element to every item of a batch.

    Parameters
    ----------
    images : ndarray or torch.Tensor
        (N, ..., H, W) batch with square images (H == W), so that every
        element keeps the shape.
    elements : sequence of int
        N elements, e.g. from :func:`random_d4`.

    Returns
    -------
    ndarray or torch.Tensor
        New batch of the same type and shape.
    """
    elements = np.asarray(elements)
    if elements.shape != (len(images),):
        raise ConfigError(
            f"d4_apply_each: {elements.size} elements given for a batch of {len(images)}"
        )
    if images.shape[-1] != images.shape[-2]:
        raise ConfigError(
            f"d4_apply_each: images must be square to stack, got {tuple(images.shape[-2:])}"
        )
    apply = d4_apply if isinstance(images, np.ndarray) else d4_apply_torch
    out = images.copy() if isinstance(images, np.ndarray) else images.clone()
    for element in np.unique(elements):
        chosen = np.flatnonzero(elements == element).tolist()
        out[chosen] = apply(images[chosen], int(element))
    return out


def random_d4(rng: np.random.Generator, size: int | None = None) -> int | np.ndarray:
    """Draw D4 elements uniformly.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness (seed it for reproducible augmentation).
    size : int, optional
        Number of draws; None gives a single int.

    Returns
    -------
    int or ndarray of int
        Element(s) in 0..7.
    """
    if size is None:
        return int(rng.integers(D4_ORDER))
    return rng.integers(D4_ORDER, size=size)
