"""Tests of tuningfork.clustering.sweep: scores per number of groups."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_blobs

from tuningfork.clustering.sweep import sweep_k
from tuningfork.errors import ConfigError


def test_sweep_prefers_the_true_number_of_groups():
    features, _ = make_blobs(120, n_features=4, centers=3, cluster_std=0.4, random_state=2)
    table = sweep_k(features, [2, 3, 5], n_seeds=2, n_bootstrap=1, models=("kmeans", "gmm"))
    assert list(table["k"]) == [2, 3, 5]
    best = table["k"][int(np.argmax(table["silhouette"]))]
    assert best == 3
    assert table["bic"][1] < table["bic"][0]
    three = table[table["k"] == 3][0]
    assert three["stability_ari"] == pytest.approx(1.0)
    assert three["fraction_classified"] == pytest.approx(1.0)


def test_sweep_rejects_k_larger_than_the_sample():
    with pytest.raises(ConfigError, match="K=50 groups requested but the sample has only 10"):
        sweep_k(np.random.default_rng(0).normal(size=(10, 2)), [2, 50])
