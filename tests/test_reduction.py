"""Tests of tuningfork.clustering.reduction: PCA in memory and incrementally."""

from __future__ import annotations

import numpy as np
import pytest

from tuningfork.clustering.reduction import PCAProjection, fit_pca
from tuningfork.errors import ConfigError, FeatureError, MissingFileError


@pytest.fixture(scope="module")
def low_rank():
    """400 x 30 features that live (up to small noise) in 3 dimensions."""
    rng = np.random.default_rng(0)
    latent = rng.normal(size=(400, 3)) * np.array([5.0, 3.0, 2.0])
    mixing = np.linalg.qr(rng.normal(size=(30, 3)))[0].T
    return (latent @ mixing + 0.01 * rng.normal(size=(400, 30))).astype(np.float32)


def test_variance_fraction_keeps_the_signal_dimensions(low_rank):
    projection = fit_pca(low_rank, 0.99)
    assert projection.n_components == 3
    assert projection.explained_variance_ratio.sum() > 0.99
    assert projection.transform(low_rank).shape == (400, 3)


def test_incremental_pca_from_a_memory_mapped_file_matches_in_memory(low_rank, tmp_path):
    path = tmp_path / "features.npy"
    np.save(path, low_rank)
    exact = fit_pca(low_rank, 3)
    incremental = fit_pca(path, 3, batch_size=100)
    assert incremental.n_components == 3
    # Same subspace: the projections agree up to the sign of each axis.
    overlap = np.abs(exact.components @ incremental.components.T)
    np.testing.assert_allclose(np.diag(overlap), 1.0, atol=1e-3)
    fraction = fit_pca(path, 0.99, batch_size=100)
    assert fraction.n_components == 3
    reduced = incremental.transform(path, batch_size=64)
    assert reduced.shape == (400, 3) and reduced.dtype == np.float32


def test_projection_round_trips_through_a_file(low_rank, tmp_path):
    projection = fit_pca(low_rank, 2)
    loaded = PCAProjection.load(projection.save(tmp_path / "pca.npz"))
    np.testing.assert_allclose(loaded.transform(low_rank), projection.transform(low_rank))


def test_bad_inputs_are_clear_errors(low_rank, tmp_path):
    with pytest.raises(ConfigError, match="n_components=40 must be between 1 and 30"):
        fit_pca(low_rank, 40)
    with pytest.raises(ConfigError, match="variance fraction"):
        fit_pca(low_rank, 1.5)
    broken = low_rank.copy()
    broken[3, 3] = np.inf
    with pytest.raises(FeatureError, match="my-features: 1 rows hold NaN or inf"):
        fit_pca(broken, 2, name="my-features")
    with pytest.raises(MissingFileError, match="absent.npy"):
        fit_pca(tmp_path / "absent.npy", 2)
    with pytest.raises(ConfigError, match="does not match a PCA of 30 features"):
        fit_pca(low_rank, 2).transform(low_rank[:, :10])
