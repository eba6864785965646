"""Tests of tuningfork.clustering.trend: the S/N trend fitted once, applied to any galaxies."""

from __future__ import annotations

import numpy as np
import pytest

from tuningfork.clustering.trend import SnrTrend
from tuningfork.errors import CorruptFileError, FeatureError, MissingFileError


@pytest.fixture(scope="module")
def descriptors():
    rng = np.random.default_rng(0)
    log_snr = rng.uniform(2, 5, 200)
    values = np.stack([log_snr**2 + rng.normal(0, 1, 200), rng.normal(3, 2, 200)], axis=1)
    return values, log_snr


def test_the_fitted_trend_removes_the_polynomial_and_standardises(descriptors):
    values, log_snr = descriptors
    for degree in (0, 2):
        expected = np.empty_like(values)
        for column in range(values.shape[1]):
            fit = np.polyfit(log_snr - log_snr.mean(), values[:, column], degree)
            residual = values[:, column] - np.polyval(fit, log_snr - log_snr.mean())
            expected[:, column] = residual / residual.std()
        trend = SnrTrend.fit(values, log_snr, degree)
        np.testing.assert_allclose(trend.transform(values, log_snr), expected, rtol=1e-4, atol=1e-5)


def test_new_galaxies_are_normalised_with_the_fitted_trend(descriptors, tmp_path):
    values, log_snr = descriptors
    trend = SnrTrend.fit(values[:150], log_snr[:150])
    loaded = SnrTrend.load(trend.save(tmp_path / "trend.npz"))
    # A few galaxies: their own fit would be meaningless, the stored one is not.
    expected = trend.transform(values, log_snr)[150:153]
    np.testing.assert_array_equal(loaded.transform(values[150:153], log_snr[150:153]), expected)


def test_trend_errors_are_clear(descriptors, tmp_path):
    values, log_snr = descriptors
    with pytest.raises(FeatureError, match="more than 3 needed"):
        SnrTrend.fit(values[:3], log_snr[:3])
    with pytest.raises(FeatureError, match="1 descriptors, the S/N trend was fitted on 2"):
        SnrTrend.fit(values, log_snr).transform(values[:, :1], log_snr)
    with pytest.raises(MissingFileError, match="S/N trend file not found"):
        SnrTrend.load(tmp_path / "missing.npz")
    (tmp_path / "bad.npz").write_bytes(b"not npz")
    with pytest.raises(CorruptFileError, match="not an S/N trend"):
        SnrTrend.load(tmp_path / "bad.npz")
