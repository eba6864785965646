"""Intensity stretches: linear, Lupton et al. (2004) arcsinh, square root, logarithm.

Every stretch is odd and strictly increasing, so background-subtracted sky
(which is negative half of the time) keeps its order instead of being clipped.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ._arrays import as_float_image

STRETCHES = ("linear", "asinh", "sqrt", "log")


def asinh_stretch(image: np.ndarray, q: float = 8.0, softening: float = 1.0) -> np.ndarray:
    """Lupton et al. (2004) arcsinh stretch that keeps colours.

    The mean intensity over bands, ``I``, is mapped to
    ``F(I) = asinh(q * I / softening) / q`` and every band is multiplied by
    the same factor ``F(I) / I``, so band ratios (colours) are unchanged.
    With one band this reduces to ``F`` itself.

    Parameters
    ----------
    image : array_like
        (..., bands, H, W) pixels, sky-subtracted, in any flux unit.
    q : float
        Lupton's Q: how strongly bright pixels are compressed (> 0); small
        values approach a linear stretch.
    softening : float
        Intensity, in image units, below which the stretch is nearly linear
        (Lupton's 1/alpha); set it near the sky noise.

    Returns
    -------
    ndarray
        float32 array of the same shape.
    """
    if q <= 0 or softening <= 0:
        raise ConfigError(f"asinh stretch: q ({q}) and softening ({softening}) must be positive")
    array = as_float_image(image, min_ndim=3)
    scaled = array.mean(axis=-3, keepdims=True) * np.float32(q / softening)
    # asinh(u)/u tends to 1 at u = 0; divide only where u is non-zero.
    ratio = np.ones_like(scaled)
    np.divide(np.arcsinh(scaled), scaled, out=ratio, where=scaled != 0)
    return array * (ratio / np.float32(softening))


def stretch(
    image: np.ndarray, kind: str = "asinh", q: float = 8.0, softening: float = 1.0
) -> np.ndarray:
    """Apply one of the named intensity stretches.

    Parameters
    ----------
    image : array_like
        (..., bands, H, W) pixels (at least (H, W) for all kinds but
        ``'asinh'``).
    kind : {'linear', 'asinh', 'sqrt', 'log'}
        ``'linear'`` leaves values as they are; ``'asinh'`` is
        :func:`asinh_stretch`; ``'sqrt'`` is ``sign(x) sqrt(|x|)``; ``'log'``
        is ``sign(x) log(1 + |x| / softening)``.  Only ``'asinh'`` keeps
        colours; the others act on each band separately.
    q : float
        Lupton's Q (``'asinh'`` only).
    softening : float
        Linear-range width, in image units (``'asinh'`` and ``'log'``).

    Returns
    -------
    ndarray
        New float32 array of the same shape.

    Raises
    ------
    ConfigError
        For an unknown ``kind`` or non-positive parameters.
    """
    if kind not in STRETCHES:
        raise ConfigError(f"stretch: unknown kind '{kind}' (choose from {', '.join(STRETCHES)})")
    if kind == "asinh":
        return asinh_stretch(image, q=q, softening=softening)
    array = as_float_image(image)
    if kind == "linear":
        return array.copy()
    if kind == "sqrt":
        return np.sign(array) * np.sqrt(np.abs(array))
    if softening <= 0:
        raise ConfigError(f"log stretch: softening ({softening}) must be positive")
    return np.sign(array) * np.log1p(np.abs(array) / np.float32(softening))
