"""Mosaics and probe curves of the embedding tools."""

import numpy as np
import pytest
from astropy.table import Table
from PIL import Image

from tuningfork.data import GalaxyCollection
from tuningfork.embeddings.plots import neighbours_mosaic, outliers_mosaic, probe_curves
from tuningfork.errors import ConfigError, InputFileError


@pytest.fixture
def collection():
    images = np.random.default_rng(0).random((6, 1, 12, 12)).astype(np.float32)
    return GalaxyCollection.from_arrays(images, Table({"id": [f"g{i}" for i in range(6)]}))


def test_neighbours_mosaic_shows_query_and_neighbours(collection, tmp_path):
    neighbours = Table({"rank": [1, 2], "id": ["g3", "g1"], "distance": [0.0, 0.2]})
    path = neighbours_mosaic(
        collection, neighbours, tmp_path / "n.png", query_image=np.ones((1, 12, 12))
    )
    assert Image.open(path).size[0] > 0


def test_outliers_mosaic_and_unknown_ids(collection, tmp_path):
    scores = Table({"rank": [1, 2, 3], "id": ["g5", "g0", "g2"], "score": [0.9, 0.5, 0.1]})
    assert outliers_mosaic(collection, scores, tmp_path / "o.png", top=2).is_file()
    with pytest.raises(InputFileError, match="1 ids of the embeddings are not in this data set"):
        outliers_mosaic(collection, Table({"rank": [1], "id": ["zz"]}), tmp_path / "x.png")


def test_probe_curves_with_baseline(tmp_path):
    results = Table(
        {
            "probe": ["linear", "linear", "knn", "knn"],
            "fraction": [0.1, 1.0, 0.1, 1.0],
            "accuracy": [0.6, 0.8, 0.55, 0.75],
            "accuracy_std": [0.05, 0.0, 0.04, 0.0],
        }
    )
    baseline = Table({"fraction": [0.1, 1.0], "accuracy": [0.5, 0.85]})
    assert (
        probe_curves(results, "accuracy", tmp_path / "p.png", baseline=baseline).stat().st_size
        > 1000
    )
    with pytest.raises(ConfigError, match="no metric 'nmad'"):
        probe_curves(results, "nmad", tmp_path / "q.png")
