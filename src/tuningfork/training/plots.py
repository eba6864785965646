"""Figures of a classifier's evaluation.

Confusion matrix, reliability (calibration) curve, coverage-accuracy curve,
and a mosaic of the most and least confident galaxies of each class.  Each
draws on the caller's axes (or a new pyplot-free figure) and returns them;
given a path, it also saves the figure (see :mod:`tuningfork.plots`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..plots import mosaic, new_axes, save_figure
from .calibration import coverage_accuracy_curve, expected_calibration_error, reliability_curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure


def _finish(axis: Axes, own: bool, path: str | Path | None) -> Axes:
    # Only a figure made here is ours to lay out; the caller's may hold other panels.
    if own:
        axis.figure.tight_layout()
    if path is not None:
        save_figure(axis.figure, path)
    return axis


def plot_confusion_matrix(
    matrix: np.ndarray, class_names: Sequence[str], path: str | Path | None = None, *, ax: Axes | None = None
) -> Axes:
    """Draw a confusion matrix, coloured by row-normalised recall, annotated with counts.

    Parameters
    ----------
    matrix : ndarray
        (n_classes, n_classes) counts; rows are true classes, columns predicted.
    class_names : sequence of str
        Class names in matrix order.
    path : str or Path, optional
        Also save the figure there as PNG.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure by default.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.
    """
    matrix = np.asarray(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.nan_to_num(matrix / matrix.sum(axis=1, keepdims=True))
    size = 1.2 + 0.6 * len(class_names)
    own = ax is None
    axis = new_axes(ax, (size + 1.0, size))
    image = axis.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(matrix.shape[0]):
        for col in range(matrix.shape[1]):
            colour = "white" if recall[row, col] > 0.5 else "black"
            axis.text(col, row, str(int(matrix[row, col])), ha="center", va="center", color=colour, fontsize=8)
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    axis.set_yticks(range(len(class_names)), class_names, fontsize=8)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.figure.colorbar(image, ax=axis, label="fraction of the true class")
    return _finish(axis, own, path)


def plot_calibration(
    probabilities: np.ndarray,
    labels: np.ndarray,
    path: str | Path | None = None,
    n_bins: int = 15,
    *,
    ax: Axes | None = None,
) -> Axes:
    """Draw a reliability diagram: accuracy against confidence, with the ECE.

    Parameters
    ----------
    probabilities : ndarray
        (n, n_classes) calibrated probabilities.
    labels : ndarray
        (n,) true class indices.
    path : str or Path, optional
        Also save the figure there as PNG.
    n_bins : int
        Confidence bins.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure by default.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.
    """
    confidence, accuracy, count = reliability_curve(probabilities, labels, n_bins)
    filled = count > 0
    own = ax is None
    axis = new_axes(ax, (4.2, 4.0))
    axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfect calibration")
    axis.plot(confidence[filled], accuracy[filled], marker="o", label="model")
    axis.set_xlabel("confidence")
    axis.set_ylabel("accuracy")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_title(f"ECE = {expected_calibration_error(probabilities, labels, n_bins):.3f}", fontsize=9)
    axis.legend(fontsize=8, loc="upper left")
    return _finish(axis, own, path)


def plot_coverage_accuracy(
    confidence: np.ndarray,
    correct: np.ndarray,
    path: str | Path | None = None,
    targets: Sequence[float] = (0.95, 0.99),
    *,
    ax: Axes | None = None,
) -> Axes:
    """Draw the coverage-accuracy curve: accuracy on the most confident share kept.

    Parameters
    ----------
    confidence : ndarray
        (n,) confidence of each prediction.
    correct : ndarray
        (n,) whether each is right.
    path : str or Path, optional
        Also save the figure there as PNG.
    targets : sequence of float
        Accuracies drawn as horizontal guides.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure by default.

    Returns
    -------
    matplotlib.axes.Axes
        The axes drawn on.
    """
    coverage, accuracy, _ = coverage_accuracy_curve(confidence, correct)
    own = ax is None
    axis = new_axes(ax, (4.6, 3.6))
    axis.plot(coverage, accuracy)
    for target in targets:
        axis.axhline(target, color="0.6", linestyle=":", linewidth=1)
        axis.text(0.02, target, f"{target:g}", fontsize=7, va="bottom", color="0.4")
    axis.set_xlabel("coverage (fraction of galaxies kept, most confident first)")
    axis.set_ylabel("accuracy on the kept galaxies")
    axis.set_xlim(0, 1)
    axis.set_ylim(min(0.5, float(accuracy.min()) - 0.02), 1.005)
    return _finish(axis, own, path)


def confidence_mosaic(
    images: np.ndarray,
    predicted: Sequence[str],
    confidence: np.ndarray,
    class_names: Sequence[str],
    path: str | Path | None = None,
    per_class: int = 4,
    *,
    figure: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """Draw the most and least confident galaxies predicted in each class.

    Each class takes one row: its ``per_class`` most confident galaxies, a
    blank tile, then its ``per_class`` least confident ones.

    Parameters
    ----------
    images : ndarray
        (n, bands, H, W) images as the model saw them.
    predicted : sequence of str
        Predicted class of each galaxy.
    confidence : ndarray
        (n,) confidence of each prediction.
    class_names : sequence of str
        Classes, one row each (classes never predicted are left out).
    path : str or Path, optional
        Also save the figure there as PNG.
    per_class : int
        Galaxies on each side of a row.
    figure : matplotlib.figure.Figure or SubFigure, optional
        Draw into this (empty) figure instead of a new one.

    Returns
    -------
    matplotlib.figure.Figure or SubFigure
        The figure drawn on.
    """
    predicted = np.asarray(predicted)
    tiles, titles = [], []
    for name in class_names:
        members = np.flatnonzero(predicted == name)
        if members.size == 0:
            continue
        ranked = members[np.argsort(-confidence[members], kind="stable")]
        most, least = ranked[:per_class], ranked[::-1][:per_class]
        row = list(most) + [None] * (per_class - len(most)) + [None] + list(least) + [None] * (per_class - len(least))
        tiles += [None if index is None else images[index] for index in row]
        titles += ["" if index is None else f"{name} {confidence[index]:.2f}" for index in row]
    return mosaic(
        tiles, path, titles=titles, ncols=2 * per_class + 1,
        suptitle="most confident (left) and least confident (right) per predicted class", figure=figure,
    )
