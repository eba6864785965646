"""`PreprocessConfig`: every preprocessing choice, serialisable with a model."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Any

from ..config import Serialisable
from ..errors import ConfigError
from .normalise import NORMALISATIONS
from .stretch import STRETCHES


def _fail(problem: str) -> ConfigError:
    return ConfigError(f"PreprocessConfig: {problem}")


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True)
class PreprocessConfig(Serialisable):
    """What :class:`~tuningfork.preprocessing.Preprocessor` does, step by step.

    Steps run in the order: mask non-finite pixels, subtract background,
    crop, resize, stretch, normalise, fill masked pixels, polar transform.
    The config is stored (as :meth:`to_dict`) in every model folder so that
    prediction repeats exactly the preprocessing used in training;
    :meth:`from_dict` rejects unknown keys and lets missing ones take their
    defaults, so configs saved by older versions still load (see
    :class:`~tuningfork.config.Serialisable`).

    Parameters
    ----------
    subtract_background : bool
        Subtract each band's sigma-clipped sky median.
    background_sigma : float
        Clipping threshold of the sky estimate, in standard deviations.
    background_max_pixels : int or None
        Estimate the sky from a regular sub-grid of about this many pixels
        per band (None: all pixels); bounds the cost on large stamps.
    crop_pixels : int or None
        Side, in input pixels, of the central square to keep.
    crop_fraction : float or None
        Alternatively, the fraction (0, 1] of each side to keep.  At most one
        of ``crop_pixels`` and ``crop_fraction`` may be set.
    output_size : int or None
        Side, in pixels, of the square output (anti-aliased resize); None
        keeps the cropped size.
    stretch : {'linear', 'asinh', 'sqrt', 'log'}
        Intensity stretch.  Survey JPEG composites are already stretched, so
        the default is linear; use 'asinh' for raw-count FITS.
    asinh_q : float
        Lupton's Q of the arcsinh stretch (> 0).
    stretch_softening : float
        Linear-range width of the 'asinh' and 'log' stretches, in input
        units after background subtraction (> 0); about the sky noise.
    normalisation : {'minmax', 'zscore', 'none'}
        Per-band rescaling after the stretch.
    clip_percentiles : (float, float)
        Percentiles mapped to 0 and 1 by 'minmax'.
    nan_fill : float or 'median'
        Value given to pixels that were NaN or infinite, in output units
        (after normalisation), or 'median' for the band's median.
    polar : bool
        Resample the output on a polar grid (rows: radius, columns: angle).
    polar_radii : int
        Number of radial samples.
    polar_angles : int
        Number of angular samples over one full turn.
    polar_extension : float
        Fraction [0, 1] of the turn appended again after 2 pi.

    Raises
    ------
    ConfigError
        For a value of the wrong type or outside its range.
    """

    subtract_background: bool = True
    background_sigma: float = 3.0
    background_max_pixels: int | None = 1024
    crop_pixels: int | None = None
    crop_fraction: float | None = None
    output_size: int | None = 64
    stretch: str = "linear"
    asinh_q: float = 8.0
    stretch_softening: float = 1.0
    normalisation: str = "minmax"
    clip_percentiles: tuple[float, float] = (0.5, 99.5)
    nan_fill: float | str = "median"
    polar: bool = False
    polar_radii: int = 32
    polar_angles: int = 64
    polar_extension: float = 0.0

    def __post_init__(self) -> None:
        for name in ("subtract_background", "polar"):
            if not isinstance(getattr(self, name), bool):
                raise _fail(f"{name} must be true or false, got {getattr(self, name)!r}")
        for name in (
            "background_max_pixels",
            "crop_pixels",
            "output_size",
            "polar_radii",
            "polar_angles",
        ):
            value = getattr(self, name)
            optional = name not in ("polar_radii", "polar_angles")
            if value is None and optional:
                continue
            if not (_is_int(value) and value > 0):
                raise _fail(
                    f"{name} must be a positive integer{' or null' if optional else ''}, got {value!r}"
                )
            # numpy integers would not survive json.dumps in to_dict().
            object.__setattr__(self, name, int(value))
        for name in ("background_sigma", "asinh_q", "stretch_softening"):
            value = getattr(self, name)
            if not (_is_real(value) and value > 0):
                raise _fail(f"{name} must be a positive number, got {value!r}")
            object.__setattr__(self, name, float(value))
        if self.crop_fraction is not None:
            if not (_is_real(self.crop_fraction) and 0 < self.crop_fraction <= 1):
                raise _fail(f"crop_fraction must be in (0, 1] or null, got {self.crop_fraction!r}")
            object.__setattr__(self, "crop_fraction", float(self.crop_fraction))
        if self.crop_pixels is not None and self.crop_fraction is not None:
            raise _fail("set at most one of crop_pixels and crop_fraction")
        if self.stretch not in STRETCHES:
            raise _fail(f"unknown stretch {self.stretch!r} (choose from {', '.join(STRETCHES)})")
        if self.normalisation not in NORMALISATIONS:
            raise _fail(
                f"unknown normalisation {self.normalisation!r} (choose from {', '.join(NORMALISATIONS)})"
            )
        self._check_percentiles()
        if self.nan_fill != "median" and not _is_real(self.nan_fill):
            raise _fail(f"nan_fill must be a finite number or 'median', got {self.nan_fill!r}")
        if self.nan_fill != "median":
            object.__setattr__(self, "nan_fill", float(self.nan_fill))
        if not (_is_real(self.polar_extension) and 0 <= self.polar_extension <= 1):
            raise _fail(f"polar_extension must be in [0, 1], got {self.polar_extension!r}")
        object.__setattr__(self, "polar_extension", float(self.polar_extension))

    def decode_scale(self, height: int, width: int) -> int:
        """How much smaller (1, 2, 4 or 8) a stored image may be decoded without changing the output.

        A JPEG decodes several times faster at a half, quarter or eighth of
        its resolution (the reduction happens in the DCT).  That is allowed
        when the central crop, so reduced, still has at least twice
        ``output_size`` pixels, so that the anti-aliased resize still does
        most of the smoothing (with less margin, a small gz1 model trained
        on 4x-reduced stamps was as accurate but never confident enough for
        the triage), and a ``crop_pixels`` crop stays a whole number of
        reduced pixels.  The sky level is then measured on the reduced
        stamp, which changes it only at the level of its noise.

        Parameters
        ----------
        height, width : int
            The stored image's size.

        Returns
        -------
        int
            1 when no reduction is allowed: no resize, or a polar transform.
        """
        if self.output_size is None or self.polar:
            return 1
        side = min(height, width)
        crop = self.crop_pixels if self.crop_pixels is not None else side * (self.crop_fraction or 1.0)
        scale = 1
        while (scale < 8 and crop / (2 * scale) >= 2 * self.output_size
               and (self.crop_pixels is None or self.crop_pixels % (2 * scale) == 0)):
            scale *= 2
        return scale

    def _check_percentiles(self) -> None:
        percentiles = self.clip_percentiles
        if (
            not isinstance(percentiles, (tuple, list))
            or len(percentiles) != 2
            or not all(_is_real(p) for p in percentiles)
            or not 0 <= percentiles[0] < percentiles[1] <= 100
        ):
            raise _fail(
                f"clip_percentiles must be [low, high] with 0 <= low < high <= 100, got {percentiles!r}"
            )
        object.__setattr__(self, "clip_percentiles", (float(percentiles[0]), float(percentiles[1])))
