"""Mosaics and probe curves of the embedding tools."""

import numpy as np
import pytest
from astropy.table import Table
from matplotlib.figure import Figure
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
    figure = neighbours_mosaic(
        collection, neighbours, tmp_path / "n.png", query_image=np.ones((1, 12, 12))
    )
    assert Image.open(tmp_path / "n.png").size[0] > 0
    assert sum(len(axis.images) for axis in figure.axes) == 3


def test_outliers_mosaic_and_unknown_ids(collection, tmp_path):
    scores = Table({"rank": [1, 2, 3], "id": ["g5", "g0", "g2"], "score": [0.9, 0.5, 0.1]})
    outliers_mosaic(collection, scores, tmp_path / "o.png", top=2)
    assert (tmp_path / "o.png").is_file()
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
    probe_curves(results, "accuracy", tmp_path / "p.png", baseline=baseline)
    assert (tmp_path / "p.png").stat().st_size > 1000
    with pytest.raises(ConfigError, match="no metric 'nmad'"):
        probe_curves(results, "nmad", tmp_path / "q.png")


def test_probe_curves_and_mosaic_draw_on_the_callers_figure(collection, tmp_path):
    results = Table({"probe": ["knn", "knn"], "fraction": [0.1, 1.0], "accuracy": [0.5, 0.7]})
    figure = Figure()
    curve_panel, mosaic_panel = figure.subfigures(1, 2)
    axis = curve_panel.subplots()
    assert probe_curves(results, "accuracy", ax=axis) is axis
    assert len(axis.lines) > 0 and axis.get_xscale() == "log"
    scores = Table({"rank": [1, 2], "id": ["g5", "g0"], "score": [0.9, 0.5]})
    assert outliers_mosaic(collection, scores, figure=mosaic_panel) is mosaic_panel
    assert sum(len(tile.images) for tile in mosaic_panel.axes) == 2
    assert list(tmp_path.iterdir()) == []
