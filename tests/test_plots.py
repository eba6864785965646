"""Figures take the caller's axes, and importing tuningfork never changes matplotlib's backend."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from PIL import Image

from tuningfork.errors import TuningforkError
from tuningfork.plots import mosaic, save_figure
from tuningfork.training.plots import (
    plot_calibration,
    plot_confusion_matrix,
    plot_coverage_accuracy,
)

# Imports every module of the package, then draws figures of three packages,
# after asking for a backend that is neither a default nor Agg, as a notebook
# user's choice would be.
IMPORT_EVERYTHING = """
import importlib, pkgutil
import matplotlib
matplotlib.use("svg")
import numpy as np
import tuningfork
names = [info.name for info in pkgutil.walk_packages(tuningfork.__path__, "tuningfork.")
         if not info.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
from tuningfork.clustering.plots import plot_embedding_map
from tuningfork.plots import mosaic
from tuningfork.training.plots import plot_confusion_matrix
mosaic([np.ones((1, 4, 4))])
plot_confusion_matrix(np.eye(2, dtype=int), ["a", "b"])
plot_embedding_map(np.eye(4), np.array([0, 0, 1, -1]), np.array([1, 1, 1, 0], bool), method="pca")
print(len(names), matplotlib.get_backend())
"""


def test_importing_and_plotting_leave_the_backend_alone():
    env = {key: value for key, value in os.environ.items() if key != "MPLBACKEND"}
    done = subprocess.run(
        [sys.executable, "-c", IMPORT_EVERYTHING], env=env, capture_output=True, text=True, timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    count, backend = done.stdout.split()
    assert int(count) > 50 and backend == "svg"


def test_training_plots_draw_on_the_given_axes(tmp_path):
    figure = Figure()
    matrix_axis, calibration_axis, coverage_axis = figure.subplots(1, 3)
    assert plot_confusion_matrix(np.array([[5, 1], [2, 7]]), ["E", "S"], ax=matrix_axis) is matrix_axis
    assert len(matrix_axis.images) == 1 and len(matrix_axis.texts) == 4
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet([1.0, 1.0], size=50)
    labels = rng.integers(0, 2, size=50)
    assert plot_calibration(probabilities, labels, ax=calibration_axis) is calibration_axis
    assert len(calibration_axis.lines) == 2
    confidence = probabilities.max(axis=1)
    axis = plot_coverage_accuracy(confidence, confidence > 0.6, ax=coverage_axis)
    assert axis is coverage_axis and len(axis.lines) == 3  # the curve and two accuracy guides
    assert list(tmp_path.iterdir()) == []
    assert save_figure(figure, tmp_path / "panels.png") == tmp_path / "panels.png"
    with Image.open(tmp_path / "panels.png") as image:
        assert image.format == "PNG"


def test_a_new_figure_is_made_without_pyplot_and_saved_on_request(tmp_path):
    axis = plot_confusion_matrix(np.eye(3, dtype=int), ["a", "b", "c"], tmp_path / "m.png")
    assert isinstance(axis, Axes) and (tmp_path / "m.png").is_file()
    images = [np.ones((1, 8, 8)), None, np.zeros((3, 8, 8))]
    grid = mosaic(images, titles=["one", "", "three"], ncols=3)
    assert isinstance(grid, Figure) and sum(len(tile.images) for tile in grid.axes) == 2
    with pytest.raises(TuningforkError, match="no images"):
        mosaic([])
