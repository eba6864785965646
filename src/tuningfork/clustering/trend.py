"""The S/N trend of morphology descriptors, fitted on one data set and applied to any.

Descriptors measured on faint galaxies drift with S/N (a noisy image looks
less concentrated, more asymmetric).  The fit removes, from each descriptor,
a polynomial in log S/N fitted over the galaxies clustered, and scales the
residuals to unit variance.  Keeping the fitted coefficients, rather than
refitting on every data set, is what lets a clustering assign a handful of
new galaxies in the feature space it was fitted in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import FeatureError
from .stored import NpzFields


def _checked(values, log_snr, name: str) -> tuple[np.ndarray, np.ndarray]:
    matrix = np.asarray(values, dtype=np.float64)
    snr = np.asarray(log_snr, dtype=np.float64)
    if matrix.ndim != 2 or snr.shape != (matrix.shape[0],):
        raise FeatureError(
            f"{name}: {snr.shape} S/N values for descriptors of shape {matrix.shape}"
        )
    return matrix, snr


@dataclass(frozen=True)
class SnrTrend(NpzFields):
    """A fitted S/N trend of every descriptor and the spread of the residuals.

    Attributes
    ----------
    snr_centre : float
        Mean log S/N of the fitted galaxies, subtracted before the
        polynomial (it keeps the Vandermonde matrix well conditioned).
    coefficients : ndarray
        (degree + 1, n_descriptors) polynomial coefficients, highest power first.
    scale : ndarray
        (n_descriptors,) standard deviation of the fitted residuals (1 for a
        column without scatter).
    """

    file_kind: ClassVar[str] = "S/N trend file"
    content: ClassVar[str] = "an S/N trend"

    snr_centre: float
    coefficients: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, values, log_snr, degree: int = 2, name: str = "descriptors") -> SnrTrend:
        """Fit the trend by least squares over a data set.

        Parameters
        ----------
        values : ndarray
            (n_galaxies, n_descriptors) morphology descriptors.
        log_snr : ndarray
            (n_galaxies,) natural log of each galaxy's S/N.
        degree : int
            Polynomial degree; 0 only centres and scales.
        name : str
            What to call the data in error messages.

        Returns
        -------
        SnrTrend

        Raises
        ------
        FeatureError
            For mismatched shapes or fewer galaxies than fitted coefficients.
        """
        matrix, snr = _checked(values, log_snr, name)
        if matrix.shape[0] <= degree + 1:
            raise FeatureError(
                f"{name}: {matrix.shape[0]} galaxies, more than {degree + 1} needed to fit "
                "the S/N trend"
            )
        centre = float(snr.mean())
        design = np.vander(snr - centre, degree + 1)
        coefficients, *_ = np.linalg.lstsq(design, matrix, rcond=None)
        spread = (matrix - design @ coefficients).std(axis=0)
        return cls(centre, coefficients, np.where(spread > 0, spread, 1.0))

    def transform(self, values, log_snr, name: str = "descriptors") -> np.ndarray:
        """Remove the fitted trend and scale, for galaxies fitted or new.

        Parameters
        ----------
        values : ndarray
            (n_galaxies, n_descriptors).
        log_snr : ndarray
            (n_galaxies,).
        name : str
            What to call the data in error messages.

        Returns
        -------
        ndarray
            float32 (n_galaxies, n_descriptors); on the fitted galaxies, zero
            mean and unit variance (zero for a column without scatter).
        """
        matrix, snr = _checked(values, log_snr, name)
        if matrix.shape[1] != self.scale.size:
            raise FeatureError(
                f"{name}: {matrix.shape[1]} descriptors, the S/N trend was fitted on "
                f"{self.scale.size}"
            )
        design = np.vander(snr - self.snr_centre, self.coefficients.shape[0])
        return ((matrix - design @ self.coefficients) / self.scale).astype(np.float32)
