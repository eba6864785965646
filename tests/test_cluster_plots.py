"""Tests of tuningfork.clustering.plots: figures are drawn, written and inputs checked."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from tuningfork.clustering.plots import (
    embedding_map,
    plot_embedding_map,
    plot_group_mosaics,
    plot_morphology_planes,
    plot_sweep,
)
from tuningfork.errors import ConfigError, MissingColumnError

RNG = np.random.default_rng(0)
GROUPS = np.array([0, 0, 1, 1, 2, -1])
CLASSIFIED = GROUPS >= 0


def _is_png(path) -> bool:
    with Image.open(path) as image:
        return image.format == "PNG" and image.size[0] > 100


def test_group_mosaic_and_embedding_map(tmp_path):
    images = RNG.uniform(size=(6, 1, 16, 16)).astype(np.float32)
    mosaic = plot_group_mosaics(
        images,
        GROUPS,
        CLASSIFIED,
        tmp_path / "groups.png",
        vote_fraction=np.linspace(1, 0.4, 6),
        per_group=3,
        ids=list("abcdef"),
    )
    assert isinstance(mosaic, Figure) and _is_png(tmp_path / "groups.png")
    features = RNG.normal(size=(6, 5))
    axis = plot_embedding_map(features, GROUPS, CLASSIFIED, tmp_path / "map.png", method="pca")
    assert isinstance(axis, Axes) and _is_png(tmp_path / "map.png")
    assert embedding_map(features, "pca").shape == (6, 2)
    with pytest.raises(ConfigError, match="tsne"):
        embedding_map(features, "tsne")


def test_morphology_planes_skip_nan_rows_and_need_the_columns(tmp_path):
    table = Table(
        {name: RNG.uniform(size=6) for name in ("gini", "m20", "concentration", "asymmetry")}
    )
    table["m20"][2] = np.nan
    plot_morphology_planes(table, GROUPS, CLASSIFIED, tmp_path / "planes.png")
    assert _is_png(tmp_path / "planes.png")
    table.remove_column("asymmetry")
    with pytest.raises(MissingColumnError, match="asymmetry"):
        plot_morphology_planes(table, GROUPS, CLASSIFIED, tmp_path / "planes.png")


def test_sweep_plot(tmp_path):
    table = Table(
        {
            "k": [2, 3, 4],
            "silhouette": [0.3, 0.5, 0.4],
            "bic": [10.0, 8.0, 9.0],
            "stability_ari": [0.9, 1.0, 0.7],
            "fraction_classified": [1.0, 0.9, 0.6],
        }
    )
    plot_sweep(table, tmp_path / "sweep.png")
    assert _is_png(tmp_path / "sweep.png")


def test_plots_draw_on_the_callers_axes_without_saving(tmp_path):
    """A notebook passes its own axes; nothing is written and the same axes come back."""
    figure = Figure()
    left, right, map_axis = figure.subplots(1, 3)
    table = Table(
        {name: RNG.uniform(size=6) for name in ("gini", "m20", "concentration", "asymmetry")}
    )
    assert plot_morphology_planes(table, GROUPS, CLASSIFIED, axes=[left, right]) is figure
    assert len(left.collections) > 0 and len(right.collections) > 0
    features = RNG.normal(size=(6, 5))
    assert plot_embedding_map(features, GROUPS, CLASSIFIED, method="pca", ax=map_axis) is map_axis
    assert len(map_axis.collections) == len(np.unique(GROUPS[CLASSIFIED])) + 1
    with pytest.raises(ConfigError, match="2 panels, but 1 axes"):
        plot_morphology_planes(table, GROUPS, CLASSIFIED, axes=[left])
    assert list(tmp_path.iterdir()) == []
