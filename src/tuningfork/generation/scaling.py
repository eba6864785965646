"""The generator's pixel space: preprocessing, a fixed affine map, and their inverse.

A diffusion model learns pixels in about [-1, 1].  Per-image normalisation
(min-max, z-score) would throw away each galaxy's brightness and could not be
undone, so a generator's preprocessing stops after the stretch
(``normalisation='none'``) and :class:`DiffusionScaling` maps the stretched
pixels to the model's range with one affine map per band, fitted once on the
whole training set.  Every step after the background subtraction can then be
inverted: generated images come back in the data's units (sky-subtracted
flux per pixel, at the generator's resolution).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError
from ..preprocessing import PreprocessConfig
from ..preprocessing._arrays import as_float_image

#: Percentiles of the stretched training pixels mapped to -1 and +1.
SCALING_PERCENTILES = (0.5, 99.9)


def inverse_stretch(
    image: np.ndarray, kind: str, q: float = 8.0, softening: float = 1.0
) -> np.ndarray:
    """Undo :func:`tuningfork.preprocessing.stretch`.

    Parameters
    ----------
    image : array_like
        (..., bands, H, W) stretched pixels (at least (H, W) for all kinds
        but ``'asinh'``); left untouched.
    kind : {'linear', 'asinh', 'sqrt', 'log'}
        The stretch that was applied.
    q : float
        Lupton's Q of the ``'asinh'`` stretch.
    softening : float
        Linear-range width of the ``'asinh'`` and ``'log'`` stretches, in
        data units.

    Returns
    -------
    ndarray
        New float32 array in the units before the stretch.

    Raises
    ------
    ConfigError
        For an unknown ``kind`` or non-positive parameters.
    """
    from ..preprocessing import STRETCHES

    if kind not in STRETCHES:
        raise ConfigError(f"inverse stretch: unknown kind '{kind}' (choose from {', '.join(STRETCHES)})")
    if q <= 0 or softening <= 0:
        raise ConfigError(f"inverse stretch: q ({q}) and softening ({softening}) must be positive")
    array = as_float_image(image, min_ndim=3 if kind == "asinh" else 2).astype(np.float64)
    if kind == "linear":
        restored = array
    elif kind == "sqrt":
        restored = np.sign(array) * array**2
    elif kind == "log":
        restored = np.sign(array) * softening * np.expm1(np.abs(array))
    else:
        # The forward stretch multiplies every band by F(I) / I, where I is
        # the band mean and F(I) = asinh(q I / s) / q is the stretched mean;
        # recover u = q I / s from F, then divide by the same factor.
        stretched_mean = array.mean(axis=-3, keepdims=True)
        scaled = np.sinh(q * stretched_mean)
        factor = np.full_like(scaled, softening)
        np.divide(softening * scaled, q * stretched_mean, out=factor, where=stretched_mean != 0)
        restored = array * factor
    return restored.astype(np.float32)


def check_generator_preprocess(preprocess: PreprocessConfig, name: str = "generator") -> None:
    """Raise unless a preprocessing can be inverted and gives square stamps.

    Parameters
    ----------
    preprocess : PreprocessConfig
        Candidate preprocessing of a generator.
    name : str
        The generator (folder or description), named in the error.

    Raises
    ------
    ConfigError
        Per-image normalisation, a polar transform or no fixed output size.
    """
    if preprocess.normalisation != "none":
        raise ConfigError(
            f"{name}: preprocessing normalisation must be 'none' (per-image "
            f"'{preprocess.normalisation}' cannot be inverted to data units)"
        )
    if preprocess.polar:
        raise ConfigError(f"{name}: preprocessing must not use the polar transform")
    if preprocess.output_size is None:
        raise ConfigError(f"{name}: preprocessing needs an output_size (square stamps)")


@dataclass(frozen=True)
class DiffusionScaling:
    """Per-band affine map between stretched pixels and the model's range.

    Parameters
    ----------
    preprocess : PreprocessConfig
        Preprocessing of the training images (normalisation ``'none'``).
    low, high : tuple of float
        Per band, the stretched values mapped to -1 and +1.
    model_min, model_max : tuple of float
        Per band, the smallest and largest model-space value of the training
        set; samples are clipped to them, so that no generated pixel leaves
        the brightness range of the training data in any band.
    """

    preprocess: PreprocessConfig
    low: tuple[float, ...]
    high: tuple[float, ...]
    model_min: tuple[float, ...]
    model_max: tuple[float, ...]

    def __post_init__(self) -> None:
        check_generator_preprocess(self.preprocess, "DiffusionScaling")
        if len(self.low) != len(self.high) or not all(h > l for l, h in zip(self.low, self.high)):
            raise ConfigError(f"DiffusionScaling: need high > low in every band, got {self.low}, {self.high}")
        if not len(self.model_min) == len(self.model_max) == len(self.low):
            raise ConfigError("DiffusionScaling: model_min and model_max need one value per band")

    @property
    def model_limit(self) -> float:
        """Largest absolute model-space value of the training set (at least 1)."""
        return max(1.0, *map(abs, self.model_min), *map(abs, self.model_max))

    @property
    def bands(self) -> int:
        """Number of bands."""
        return len(self.low)

    @classmethod
    def fit(
        cls,
        stretched: np.ndarray,
        preprocess: PreprocessConfig,
        percentiles: tuple[float, float] = SCALING_PERCENTILES,
    ) -> DiffusionScaling:
        """Fit the map on preprocessed (stretched, not normalised) training images.

        Parameters
        ----------
        stretched : ndarray
            (n, bands, H, W) output of ``Preprocessor(preprocess)``.
        preprocess : PreprocessConfig
            The preprocessing that made them.
        percentiles : (float, float)
            Percentiles of each band's pixels mapped to -1 and +1.

        Returns
        -------
        DiffusionScaling
        """
        array = np.asarray(stretched, dtype=np.float32)
        planes = np.moveaxis(array, 1, 0).reshape(array.shape[1], -1)
        low, high = np.percentile(planes, percentiles, axis=1)
        # A band with no spread (blank images) still needs an invertible map.
        high = np.where(high > low, high, low + 1.0)
        bands = len(low)
        unit = cls(preprocess, tuple(map(float, low)), tuple(map(float, high)), (-1.0,) * bands, (1.0,) * bands)
        model = np.moveaxis(unit.to_model(array), 1, 0).reshape(bands, -1)
        return cls(
            preprocess, unit.low, unit.high, tuple(map(float, model.min(axis=1))), tuple(map(float, model.max(axis=1)))
        )

    def clip(self, model_images: np.ndarray) -> np.ndarray:
        """Clip model-space pixels (..., bands, H, W) to each band's training range (new array)."""
        lower = np.asarray(self.model_min, dtype=np.float32)[:, None, None]
        upper = np.asarray(self.model_max, dtype=np.float32)[:, None, None]
        return np.clip(np.asarray(model_images, dtype=np.float32), lower, upper)

    def _affine(self) -> tuple[np.ndarray, np.ndarray]:
        low = np.asarray(self.low, dtype=np.float32)[:, None, None]
        high = np.asarray(self.high, dtype=np.float32)[:, None, None]
        return (high + low) / 2, (high - low) / 2

    def to_model(self, stretched: np.ndarray) -> np.ndarray:
        """Map preprocessed pixels (..., bands, H, W) to model space (new float32 array)."""
        centre, half_range = self._affine()
        return ((np.asarray(stretched, dtype=np.float32) - centre) / half_range).astype(np.float32)

    def to_stretched(self, model_images: np.ndarray) -> np.ndarray:
        """Map model-space pixels (..., bands, H, W) back to stretched units (new float32 array)."""
        centre, half_range = self._affine()
        return (np.asarray(model_images, dtype=np.float32) * half_range + centre).astype(np.float32)

    def to_data(self, model_images: np.ndarray) -> np.ndarray:
        """Map model-space pixels back to data units (sky-subtracted flux per pixel).

        Parameters
        ----------
        model_images : ndarray
            (..., bands, H, W) in model space.

        Returns
        -------
        ndarray
            New float32 array of the same shape.
        """
        config = self.preprocess
        return inverse_stretch(
            self.to_stretched(model_images), config.stretch, config.asinh_q, config.stretch_softening
        )

    def to_dict(self) -> dict[str, Any]:
        """The map as JSON-ready values (the preprocessing is stored separately)."""
        return {
            "low": list(self.low),
            "high": list(self.high),
            "model_min": list(self.model_min),
            "model_max": list(self.model_max),
        }

    @classmethod
    def from_dict(cls, values: dict[str, Any], preprocess: PreprocessConfig) -> DiffusionScaling:
        """Rebuild the map from :meth:`to_dict` and its preprocessing."""
        return cls(
            preprocess, *(tuple(float(v) for v in values[key]) for key in ("low", "high", "model_min", "model_max"))
        )
