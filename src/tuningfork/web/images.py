"""Galaxy pixels to a PNG for the browser: band choice, stretch, invert."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np

from ..data import bands_to_rgb
from ..errors import ConfigError
from ..preprocessing.stretch import stretch as apply_stretch

#: Stretches the galaxy page offers.
DISPLAY_STRETCHES = ("linear", "asinh", "log")
#: Softening of the asinh and log stretches, as a share of the clipped range: small values lift
#: the faint outskirts.
_SOFTENING = 0.02


def render_png(
    image: np.ndarray, stretch: str = "asinh", bands: Sequence[int] | None = None, invert: bool = False,
    clip_percentile: float = 99.5,
) -> bytes:
    """Encode a (bands, H, W) image as an 8-bit PNG.

    The median (the sky of a cutout) maps to black and the ``clip_percentile``
    of the finite pixels to white, before the stretch.

    Parameters
    ----------
    image : ndarray
        float32 (bands, H, W); not modified.
    stretch : {"linear", "asinh", "log"}
    bands : sequence of int, optional
        Bands to show; the others are set to zero. All by default.
    invert : bool
        Black on white.
    clip_percentile : float

    Returns
    -------
    bytes
        The PNG file.
    """
    from PIL import Image

    if stretch not in DISPLAY_STRETCHES:
        raise ConfigError(f"unknown stretch '{stretch}' (choose from {', '.join(DISPLAY_STRETCHES)})")
    pixels = np.array(image, dtype=np.float32)
    if bands is not None:
        bands = list(bands)
        if any(band < 0 or band >= len(pixels) for band in bands):
            raise ConfigError(f"bands {bands} out of range for an image of {len(pixels)} bands")
        hidden = np.setdiff1d(np.arange(len(pixels)), bands)
        pixels[hidden] = 0.0
    finite = np.isfinite(pixels)
    shown = pixels[finite]
    low = float(np.median(shown)) if shown.size else 0.0
    high = float(np.percentile(shown, clip_percentile)) if shown.size else 1.0
    scaled = np.where(finite, (pixels - low) / max(high - low, np.finfo(np.float32).tiny), 0.0)
    scaled = np.clip(scaled, 0.0, 1.0).astype(np.float32)
    if stretch != "linear":
        # Divided by the stretch of 1, so white stays white.
        ones = np.ones((1, 1, 1), dtype=np.float32)
        top = apply_stretch(ones, stretch, q=1.0 / _SOFTENING, softening=1.0 if stretch == "asinh" else _SOFTENING)
        scaled = apply_stretch(scaled, stretch, q=1.0 / _SOFTENING,
                               softening=1.0 if stretch == "asinh" else _SOFTENING) / top.ravel()[0]
    rgb = np.clip(np.moveaxis(bands_to_rgb(scaled), 0, -1), 0.0, 1.0)
    if invert:
        rgb = 1.0 - rgb
    buffer = io.BytesIO()
    Image.fromarray(np.round(rgb * 255).astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()
