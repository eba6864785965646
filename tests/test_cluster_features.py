"""Tests of tuningfork.clustering.features: checks and feature files."""

from __future__ import annotations

import numpy as np
import pytest

from tuningfork.clustering.features import check_features, load_features, save_features
from tuningfork.errors import CorruptFileError, FeatureError, UnsupportedFormatError


@pytest.mark.parametrize("suffix", [".parquet", ".npz"])
def test_features_round_trip_with_ids(tmp_path, suffix):
    features = np.arange(12, dtype=np.float32).reshape(4, 3)
    path = save_features(tmp_path / f"features{suffix}", ["a", "b", "c", "d"], features)
    ids, loaded = load_features(path)
    assert list(ids) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(loaded, features)


def test_bad_feature_files_and_matrices_are_clear_errors(tmp_path):
    with pytest.raises(UnsupportedFormatError, match="features.txt"):
        save_features(tmp_path / "features.txt", ["a"], np.zeros((1, 2)))
    with pytest.raises(FeatureError, match="3 ids for a feature matrix of shape"):
        save_features(tmp_path / "features.npz", ["a", "b", "c"], np.zeros((2, 2)))
    junk = tmp_path / "junk.parquet"
    junk.write_bytes(b"not parquet")
    with pytest.raises(CorruptFileError, match="junk.parquet"):
        load_features(junk)
    with pytest.raises(FeatureError, match="expected a 2-D"):
        check_features(np.zeros(5), "vector")
    with pytest.raises(FeatureError, match="1 rows, at least 2"):
        check_features(np.zeros((1, 3)), "tiny", min_rows=2)
