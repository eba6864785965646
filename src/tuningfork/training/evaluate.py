"""``evaluate``: metrics JSON and figures of a model folder on labelled data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..data import GalaxyCollection, atomic_path, check_output
from ..errors import CatalogError, ConfigError, MissingColumnError
from ..models import LoadedModel, load_model
from ..models.inference import network_logits
from .calibration import (
    calibrated_probabilities,
    class_purity,
    class_thresholds,
    expected_calibration_error,
    threshold_for_accuracy,
)
from .datamodule import SPLIT_NAMES, open_collection, vote_table
from .plots import (
    confidence_mosaic,
    misclassified_mosaic,
    plot_calibration,
    plot_confusion_matrix,
    plot_coverage_accuracy,
    plot_coverage_purity,
)
from .predict import (
    Outputs,
    check_labels,
    interpret,
    model_images,
    triage_class_names,
    triage_thresholds,
)
from .trees import get_tree

METRICS_FILE = "metrics.json"
#: Accuracies at which coverage is reported.
COVERAGE_TARGETS = (0.95, 0.99)
#: Purities at which each class's triage is reported (a rare class may reach 0.9 and no more).
TRIAGE_TARGETS = (0.9, 0.95, 0.99)
#: The target whose operating points the coverage-purity figure marks.
MARKED_TARGET = 0.95
#: Volunteer agreement (largest vote fraction) that defines the high-agreement subset.
HIGH_AGREEMENT = 0.8


def _select_split(collection: GalaxyCollection, split: str | None, split_column: str) -> GalaxyCollection:
    if split is None:
        return collection
    if split_column not in collection.catalog.colnames:
        raise MissingColumnError(collection.name, split_column, collection.catalog.colnames)
    names = SPLIT_NAMES.get(split, (split,))
    values = np.array([str(value).lower() for value in collection.catalog[split_column].tolist()])
    rows = np.flatnonzero(np.isin(values, names))
    if rows.size == 0:
        raise CatalogError(f"{collection.name}: no rows with {split_column} = {split}")
    return collection.subset(rows)


def coverage_metrics(confidence: np.ndarray, correct: np.ndarray) -> dict[str, float]:
    """Coverage (share kept) at each of :data:`COVERAGE_TARGETS`."""
    return {
        f"coverage_at_{target:g}": threshold_for_accuracy(confidence, correct, target)[1] for target in COVERAGE_TARGETS
    }


def class_triage_metrics(
    confidence: np.ndarray,
    correct: np.ndarray,
    predicted: np.ndarray,
    class_names: list[str],
    thresholds: dict[float, np.ndarray] | None = None,
) -> dict[str, dict[str, dict[str, float | int | None]]]:
    """Per predicted class: threshold, coverage and purity of the confident set at each target.

    Parameters
    ----------
    confidence, correct : ndarray
        (n,) calibrated confidence of each prediction, and whether it is right.
    predicted : ndarray
        (n,) predicted class index (vote models: first-question answer).
    class_names : list of str
        Names of the class indices.
    thresholds : dict of float to ndarray, optional
        Target purity to (n_classes,) thresholds, e.g. a model's from its
        validation split; by default fitted on these same galaxies for
        each of :data:`TRIAGE_TARGETS` (what ``train`` reports for its
        validation split).

    Returns
    -------
    dict
        ``{"0.9": {class: {"threshold", "n_predicted", "n_confident",
        "coverage", "purity"}}}``, JSON-ready: a threshold no galaxy can
        reach and undefined shares are None.
    """
    if thresholds is None:
        thresholds = {
            target: class_thresholds(confidence, correct, predicted, len(class_names), target)
            for target in TRIAGE_TARGETS
        }
    report = {}
    for target, levels in thresholds.items():
        scores = class_purity(confidence, correct, predicted, levels)
        report[f"{target:g}"] = {
            name: {
                "threshold": _finite_or_none(levels[code]),
                **{key: _finite_or_none(values[code]) for key, values in scores.items()},
            }
            for code, name in enumerate(class_names)
        }
    return report


def validation_triage(outputs: Outputs, correct: np.ndarray, model: LoadedModel) -> tuple[dict, dict]:
    """What a model folder keeps of its validation split for triage, and the split's per-class report.

    Parameters
    ----------
    outputs : Outputs
        The model's outputs on its validation split.
    correct : ndarray
        (n,) whether each validation prediction is right.
    model : LoadedModel
        The model (for its class names).

    Returns
    -------
    validation : dict
        ``confidence``, ``correct`` and ``predicted`` (class index, or for
        vote models first-question answer) lists: ``config.validation``,
        from which :func:`~tuningfork.training.predict.triage_thresholds`
        sets each class's threshold.
    report : dict
        :func:`class_triage_metrics` of the split at thresholds fitted on it.
    """
    predicted = outputs.triage_probabilities.argmax(axis=1)
    validation = {
        "confidence": np.round(outputs.confidence, 6).tolist(),
        "correct": np.asarray(correct, dtype=bool).tolist(),
        "predicted": predicted.tolist(),
    }
    # Thresholds from the stored (rounded) confidences, exactly as predict will set them.
    report = class_triage_metrics(
        np.asarray(validation["confidence"]), correct, predicted, triage_class_names(model)
    )
    return validation, report


def _finite_or_none(value) -> float | int | None:
    if isinstance(value, (int, np.integer)):
        return int(value)
    return float(value) if np.isfinite(value) else None


def classification_metrics(probabilities: np.ndarray, labels: np.ndarray, class_names: list[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, per-class scores, confusion matrix, ECE, coverage.

    Parameters
    ----------
    probabilities, labels : ndarray
        (n, n_classes) calibrated probabilities and (n,) true class indices.
    class_names : list of str
        Class names in probability order.

    Returns
    -------
    dict
        JSON-ready metrics.
    """
    from sklearn.metrics import balanced_accuracy_score, classification_report, confusion_matrix

    predicted = probabilities.argmax(axis=1)
    correct = predicted == labels
    classes = list(range(len(class_names)))
    report = classification_report(
        labels, predicted, labels=classes, target_names=class_names, output_dict=True, zero_division=0
    )
    return {
        "n": len(labels),
        "accuracy": float(correct.mean()),
        "balanced_accuracy": float(balanced_accuracy_score(labels, predicted)),
        "macro_f1": float(report["macro avg"]["f1-score"]),
        "per_class": {name: {key: float(value) for key, value in report[name].items()} for name in class_names},
        "confusion_matrix": confusion_matrix(labels, predicted, labels=classes).tolist(),
        "ece": expected_calibration_error(probabilities, labels),
        **coverage_metrics(probabilities.max(axis=1), correct),
    }


def first_question_majority(tree, votes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The volunteers' most voted answer to the first question of a tree.

    Parameters
    ----------
    tree : DecisionTree
    votes : ndarray
        (n, answers) counts or fractions.

    Returns
    -------
    answered : ndarray of bool
        (n,) galaxies with at least one vote on the first question.
    majority : ndarray of int
        Index of the most voted answer, for the answered galaxies only.
    """
    root = tree.normalise(votes)[:, tree.question_slices()[0]]
    answered = ~np.isnan(root).any(axis=1)
    return answered, root[answered].argmax(axis=1)


def vote_metrics(fractions: np.ndarray, votes: np.ndarray, tree_name: str) -> dict[str, Any]:
    """RMSE and per-question agreement of predicted vote fractions.

    Parameters
    ----------
    fractions : ndarray
        (n, answers) predicted fractions, normalised per question.
    votes : ndarray
        (n, answers) volunteer counts or fractions.
    tree_name : str
        The decision tree.

    Returns
    -------
    dict
        ``rmse`` (over the cumulative fractions: the Galaxy Zoo challenge's
        metric), ``rmse_per_question`` (per-question fractions, where
        answered), ``agreement`` (share of galaxies where the most voted
        answer is predicted, per question), and for the first question
        ``high_agreement_accuracy`` / ``high_agreement_n``: the same on
        galaxies whose volunteers agreed at least :data:`HIGH_AGREEMENT`.
    """
    tree = get_tree(tree_name)
    reference = tree.normalise(votes)
    squared = (tree.cumulative(fractions) - tree.cumulative(np.nan_to_num(reference))) ** 2
    per_question_rmse, agreement = {}, {}
    for question, block in zip(tree.questions, tree.question_slices()):
        answered = ~np.isnan(reference[:, block]).any(axis=1)
        if not answered.any():
            continue
        truth, guess = reference[answered, block], fractions[answered, block]
        per_question_rmse[question.name] = float(np.sqrt(((guess - truth) ** 2).mean()))
        agreement[question.name] = float((guess.argmax(1) == truth.argmax(1)).mean())
    first = tree.question_slices()[0]
    root = reference[:, first]
    confident_volunteers = ~np.isnan(root).any(axis=1) & (np.nan_to_num(root).max(axis=1) >= HIGH_AGREEMENT)
    high = (fractions[confident_volunteers, first].argmax(1) == root[confident_volunteers].argmax(1))
    return {
        "n": len(votes),
        "rmse": float(np.sqrt(squared.mean())),
        "rmse_per_question": per_question_rmse,
        "agreement": agreement,
        "high_agreement_accuracy": float(high.mean()) if high.size else None,
        "high_agreement_n": int(high.size),
    }


def evaluate(
    model_folder: str | Path,
    data: str | Path | GalaxyCollection,
    output_dir: str | Path,
    *,
    split: str | None = None,
    split_column: str = "split",
    agreement_column: str | None = None,
    label_column: str | None = None,
    class_map: dict[str, str] | None = None,
    tta: bool = False,
    batch_size: int = 256,
    progress: bool = False,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Measure a model on labelled galaxies; write metrics and figures.

    Parameters
    ----------
    model_folder : str or Path
        Folder written by :func:`~tuningfork.training.train`.
    data : str, Path or GalaxyCollection
        Labelled galaxies (the model's label column, or its tree's vote
        columns).
    output_dir : str or Path
        Receives ``metrics.json`` and, for classifiers,
        ``confusion_matrix.png``, ``calibration.png``,
        ``coverage_accuracy.png``, ``coverage_purity.png`` (one curve per
        predicted class), ``confidence_mosaic.png`` (true label on every
        tile) and ``misclassified_mosaic.png`` (the most confident
        mistakes, true -> predicted; not written when there are none).
        Vote models: confusion matrix, coverage-accuracy and
        coverage-purity of the first question, against the volunteers'
        most voted answer.
    split : str, optional
        Only rows whose ``split_column`` has this value (e.g. ``test``).
    split_column : str
        The split column.
    agreement_column : str, optional
        Classifiers: a column of volunteer agreement with each label (its
        vote fraction); accuracy is also reported on the rows where it is at
        least :data:`HIGH_AGREEMENT`.
    label_column : str, optional
        Classifiers: the column of true labels; the model's label column
        by default.
    class_map : dict of str to str, optional
        Classifiers: labels renamed before they are compared with the
        model's classes, e.g. ``{"spiral_cw": "spiral", "spiral_acw":
        "spiral"}``.  Labels that are still not among the model's classes
        raise :class:`~tuningfork.errors.ModelError` naming them.
    tta : bool
        Average over the 8 rotations and flips.
    batch_size : int
        Images per forward pass.
    progress : bool
        Show a progress bar while reading images.
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``; ``class_triage`` holds,
        per target purity and predicted class, the coverage and purity on
        these galaxies at the thresholds :func:`~tuningfork.training.predict`
        would use (set on the model's validation split).

    Raises
    ------
    MissingColumnError
        The label, vote or agreement column is missing (found before any
        image is read).
    """
    check_output(output_dir, kind="folder", overwrite=overwrite)
    model = load_model(model_folder)
    collection = _select_split(open_collection(data), split, split_column)
    output_dir = Path(output_dir)
    if model.config.is_votes:
        votes, _ = vote_table(collection, model.config.target["tree"], model.config.target["loss"])
    else:
        labels = check_labels(collection, model, label_column, class_map)
        if labels is None:
            column = label_column or model.config.target["column"]
            raise MissingColumnError(collection.name, column, collection.catalog.colnames)
        if agreement_column is not None and agreement_column not in collection.catalog.colnames:
            raise MissingColumnError(collection.name, agreement_column, collection.catalog.colnames)
    images = model_images(model, collection, batch_size, progress)
    logits = network_logits(model.network, images, batch_size, tta)
    outputs = interpret(logits, model)
    metrics: dict[str, Any] = {"model": str(model.folder), "data": collection.name, "split": split, "tta": tta}
    if model.config.is_votes:
        tree = get_tree(model.config.target["tree"])
        metrics |= vote_metrics(outputs.probabilities, votes, tree.name)
        # Figures for the first question, against the volunteers' majority answer.
        answered, labels = first_question_majority(tree, votes)
        probabilities = outputs.triage_probabilities[answered]
        answer_names = [answer.name for answer in tree.questions[0].answers]
        metrics["first_question"] = classification_metrics(probabilities, labels, answer_names)
        plot_confusion_matrix(np.array(metrics["first_question"]["confusion_matrix"]), answer_names,
                              output_dir / "confusion_matrix.png")
        plot_coverage_accuracy(probabilities.max(axis=1), probabilities.argmax(axis=1) == labels,
                               output_dir / "coverage_accuracy.png")
        metrics["class_triage"] = _triage_report(model, probabilities, labels, output_dir)
    else:
        class_names = model.config.class_names
        correct = outputs.probabilities.argmax(axis=1) == labels
        metrics |= classification_metrics(outputs.probabilities, labels, class_names)
        metrics["ece_uncalibrated"] = expected_calibration_error(calibrated_probabilities(logits), labels)
        if agreement_column is not None:
            high = np.asarray(collection.catalog[agreement_column], dtype=float) >= HIGH_AGREEMENT
            metrics["high_agreement_accuracy"] = float(correct[high].mean()) if high.any() else None
            metrics["high_agreement_n"] = int(high.sum())
        plot_confusion_matrix(np.array(metrics["confusion_matrix"]), class_names, output_dir / "confusion_matrix.png")
        plot_calibration(outputs.probabilities, labels, output_dir / "calibration.png")
        plot_coverage_accuracy(outputs.confidence, correct, output_dir / "coverage_accuracy.png")
        metrics["class_triage"] = _triage_report(model, outputs.probabilities, labels, output_dir)
        true_names = np.asarray(class_names)[labels]
        confidence_mosaic(images, outputs.predicted, outputs.confidence, class_names,
                          output_dir / "confidence_mosaic.png", true_labels=true_names)
        if not correct.all():
            misclassified_mosaic(images, true_names, outputs.predicted, outputs.confidence,
                                 output_dir / "misclassified_mosaic.png")
    with atomic_path(output_dir / METRICS_FILE) as tmp:
        tmp.write_text(json.dumps(metrics, indent=2, default=_json_default))
    return metrics


def _triage_report(model, probabilities: np.ndarray, labels: np.ndarray, output_dir: Path) -> dict | None:
    """Per-class triage at the model's validation thresholds, and the coverage-purity figure."""
    names = triage_class_names(model)
    confidence, predicted = probabilities.max(axis=1), probabilities.argmax(axis=1)
    correct = predicted == labels
    thresholds = None
    if model.config.validation.get("confidence"):
        thresholds = {target: triage_thresholds(model, target, None) for target in TRIAGE_TARGETS}
    plot_coverage_purity(confidence, correct, predicted, names, output_dir / "coverage_purity.png",
                         thresholds=None if thresholds is None else thresholds[MARKED_TARGET])
    return None if thresholds is None else class_triage_metrics(confidence, correct, predicted, names, thresholds)


def _json_default(value):
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    raise ConfigError(f"metrics: cannot write {type(value).__name__} as JSON")
