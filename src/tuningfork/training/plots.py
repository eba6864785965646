"""Figures of a classifier's evaluation.

Confusion matrix, reliability (calibration) curve, coverage-accuracy curve,
coverage-purity curves per predicted class, a mosaic of the most and least
confident galaxies of each class and one of the most confident mistakes.  Each
draws on the caller's axes (or a new pyplot-free figure) and returns them;
given a path, it also saves the figure (see :mod:`tuningfork.plots`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..plots import axes_to_draw, mosaic
from .calibration import coverage_accuracy_curve, expected_calibration_error, reliability_curve

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure


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
    path, ax : optional
        Where to save and draw; see :mod:`tuningfork.plots`.

    Returns
    -------
    matplotlib.axes.Axes
    """
    matrix = np.asarray(matrix)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.nan_to_num(matrix / matrix.sum(axis=1, keepdims=True))
    size = 1.2 + 0.6 * len(class_names)
    with axes_to_draw(ax, (size + 1.0, size), path) as axis:
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
    return axis


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
    probabilities, labels : ndarray
        (n, n_classes) calibrated probabilities and (n,) true class indices.
    path, ax : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    n_bins : int
        Confidence bins.

    Returns
    -------
    matplotlib.axes.Axes
    """
    confidence, accuracy, count = reliability_curve(probabilities, labels, n_bins)
    filled = count > 0
    with axes_to_draw(ax, (4.2, 4.0), path) as axis:
        axis.plot([0, 1], [0, 1], color="0.6", linestyle="--", label="perfect calibration")
        axis.plot(confidence[filled], accuracy[filled], marker="o", label="model")
        axis.set_xlabel("confidence")
        axis.set_ylabel("accuracy")
        axis.set_xlim(0, 1)
        axis.set_ylim(0, 1.02)
        axis.set_title(f"ECE = {expected_calibration_error(probabilities, labels, n_bins):.3f}", fontsize=9)
        axis.legend(fontsize=8, loc="upper left")
    return axis


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
    confidence, correct : ndarray
        (n,) confidence of each prediction, and whether it is right.
    path, ax : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    targets : sequence of float
        Accuracies drawn as horizontal guides.

    Returns
    -------
    matplotlib.axes.Axes
    """
    coverage, accuracy, _ = coverage_accuracy_curve(confidence, correct)
    with axes_to_draw(ax, (4.6, 3.6), path) as axis:
        axis.plot(coverage, accuracy)
        for target in targets:
            axis.axhline(target, color="0.6", linestyle=":", linewidth=1)
            axis.text(0.02, target, f"{target:g}", fontsize=7, va="bottom", color="0.4")
        axis.set_xlabel("coverage (fraction of galaxies kept, most confident first)")
        axis.set_ylabel("accuracy on the kept galaxies")
        axis.set_xlim(0, 1)
        axis.set_ylim(min(0.5, float(accuracy.min()) - 0.02), 1.005)
    return axis


def plot_coverage_purity(
    confidence: np.ndarray,
    correct: np.ndarray,
    predicted: np.ndarray,
    class_names: Sequence[str],
    path: str | Path | None = None,
    thresholds: np.ndarray | None = None,
    *,
    ax: Axes | None = None,
) -> Axes:
    """Draw one coverage-purity curve per predicted class.

    For each class, the share of the galaxies predicted in it that are
    kept (most confident first) against the purity of those kept: where a
    class's curve stays below a purity target, no threshold of that class
    reaches it.

    Parameters
    ----------
    confidence, correct : ndarray
        (n,) confidence of each prediction, and whether it is right.
    predicted : ndarray
        (n,) predicted class index.
    class_names : sequence of str
        Names of the class indices (classes never predicted are left out).
    path, ax : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    thresholds : ndarray, optional
        (n_classes,) triage thresholds; each class's operating point is
        marked on its curve.

    Returns
    -------
    matplotlib.axes.Axes
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    predicted = np.asarray(predicted, dtype=int)
    with axes_to_draw(ax, (5.0, 3.8), path) as axis:
        lowest = 1.0
        for code, name in enumerate(class_names):
            members = predicted == code
            if not members.any():
                continue
            coverage, purity, levels = coverage_accuracy_curve(confidence[members], correct[members])
            (line,) = axis.plot(coverage, purity, label=f"{name} ({int(members.sum())})")
            lowest = min(lowest, float(purity.min()))
            if thresholds is not None and np.isfinite(thresholds[code]):
                kept = levels >= thresholds[code]
                if kept.any():
                    point = np.flatnonzero(kept)[-1]
                    axis.plot(coverage[point], purity[point], marker="o", color=line.get_color())
        axis.set_xlabel("coverage (share of the class's predictions kept)")
        axis.set_ylabel("purity of the kept predictions")
        axis.set_xlim(0, 1)
        axis.set_ylim(max(0.0, lowest - 0.02), 1.005)
        axis.legend(fontsize=7, title="predicted class", title_fontsize=7)
    return axis


def confidence_mosaic(
    images: np.ndarray,
    predicted: Sequence[str],
    confidence: np.ndarray,
    class_names: Sequence[str],
    path: str | Path | None = None,
    per_class: int = 4,
    *,
    true_labels: Sequence[str] | None = None,
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
    path, figure : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    per_class : int
        Galaxies on each side of a row.
    true_labels : sequence of str, optional
        True class of each galaxy, shown under the prediction.

    Returns
    -------
    matplotlib.figure.Figure or SubFigure
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
        titles += ["" if index is None else _caption(name, confidence[index], true_labels, index) for index in row]
    return mosaic(
        tiles, path, titles=titles, ncols=2 * per_class + 1,
        suptitle="most confident (left) and least confident (right) per predicted class", figure=figure,
    )


def _caption(predicted: str, confidence: float, true_labels: Sequence[str] | None, index: int) -> str:
    caption = f"{predicted} {confidence:.2f}"
    return caption if true_labels is None else f"{caption}\ntrue: {true_labels[index]}"


def misclassified_mosaic(
    images: np.ndarray,
    true_labels: Sequence[str],
    predicted: Sequence[str],
    confidence: np.ndarray,
    path: str | Path | None = None,
    n: int = 24,
    *,
    figure: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """Draw the most confident mistakes, each captioned true -> predicted and its confidence.

    The most confident mistakes come first: they are the ones a confidence
    threshold lets into the catalog.

    Parameters
    ----------
    images : ndarray
        (n_galaxies, bands, H, W) images as the model saw them.
    true_labels : sequence of str
        True class of each galaxy.
    predicted : sequence of str
        Predicted class of each galaxy.
    confidence : ndarray
        (n_galaxies,) confidence of each prediction.
    path, figure : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    n : int
        Most galaxies shown.

    Returns
    -------
    matplotlib.figure.Figure or SubFigure

    Raises
    ------
    TuningforkError
        No galaxy is misclassified.
    """
    true_labels, predicted = np.asarray(true_labels), np.asarray(predicted)
    confidence = np.asarray(confidence, dtype=np.float64)
    wrong = np.flatnonzero(true_labels != predicted)
    shown = wrong[np.argsort(-confidence[wrong], kind="stable")][:n]
    titles = [f"{true_labels[i]} -> {predicted[i]}\n{confidence[i]:.2f}" for i in shown]
    return mosaic(
        [images[i] for i in shown], path, titles=titles, ncols=min(6, max(len(shown), 1)),
        suptitle=f"{len(wrong)} misclassified, most confident first (true -> predicted, confidence)",
        figure=figure,
    )
