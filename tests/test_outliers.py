"""Outlier scores: injected anomalies rank at the top."""

import numpy as np
import pytest

from tuningfork.embeddings.outliers import outlier_scores
from tuningfork.errors import ConfigError


def field_with_anomalies(seed=0):
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=(400, 8))
    anomalies = rng.normal(size=(8, 8)) + 6.0
    vectors = np.vstack([normal, anomalies]).astype(np.float32)
    ids = [f"n{i}" for i in range(400)] + [f"odd{i}" for i in range(8)]
    return vectors, ids


def test_injected_anomalies_rank_high():
    vectors, ids = field_with_anomalies()
    scores = outlier_scores(vectors, ids)
    top = set(scores["id"][:12])
    assert sum(name.startswith("odd") for name in top) >= 7
    for detector in ("isolation_forest", "knn", "lof"):
        by_detector = scores[np.argsort(-scores[f"score_{detector}"])]
        assert np.mean([name.startswith("odd") for name in by_detector["id"][:8]]) > 0.5


def test_table_is_ranked_and_complete():
    vectors, ids = field_with_anomalies()
    original = vectors.copy()
    scores = outlier_scores(vectors, ids, detectors=("knn", "lof"), n_neighbors=5)
    assert list(scores["rank"]) == list(range(1, len(ids) + 1))
    assert np.all(np.diff(scores["score"]) <= 0)
    assert sorted(scores["id"]) == sorted(ids)
    assert scores.colnames == ["rank", "id", "score", "score_knn", "score_lof"]
    assert 0 < scores["score"].min() and scores["score"].max() <= 1
    np.testing.assert_array_equal(vectors, original)


def test_bad_inputs_are_clear_errors():
    vectors, ids = field_with_anomalies()
    with pytest.raises(ConfigError, match="detectors \\['svm'\\] unknown"):
        outlier_scores(vectors, ids, detectors=("svm",))
    with pytest.raises(ConfigError, match="one id per embedding row"):
        outlier_scores(vectors, ids[:-1])
    with pytest.raises(ConfigError, match="at least 3 embeddings"):
        outlier_scores(vectors[:2], ids[:2])
