"""Calibrated confidence and triage: which galaxies to trust, which to send to experts.

A network's softmax is usually overconfident.  Temperature scaling (Guo et
al. 2017) divides the logits by one number fitted on a validation split;
the ranking of galaxies does not change, but a confidence of 0.9 then means
right about 90% of the time, which is what a threshold needs.  The
coverage-accuracy curve (Dieleman et al. 2015, figure 12) shows how many
galaxies can be kept at a given accuracy; :func:`triage` applies the chosen
threshold and orders the rest into an expert queue.

One threshold for all classes fails on imbalanced data: the majority class
is the easiest, so a global accuracy target is met by keeping almost only
its galaxies while the rarer classes' mistakes hide in its numbers.
:func:`class_thresholds` therefore sets one threshold per predicted class,
the lowest at which that class's validation predictions reach the target
purity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

# Temperatures outside [e^-4, e^4] mean a broken model, not a calibration.
_LOG_TEMPERATURE_BOUNDS = (-4.0, 4.0)
#: Fewest validation galaxies a class threshold may rest on: below this a
#: measured purity of 1 is too likely to be luck (5 of 5 right happens 77%
#: of the time at a true purity of 0.95).
MIN_CLASS_COUNT = 20


def _check_pairs(name: str, first: np.ndarray, second: np.ndarray) -> None:
    if len(first) != len(second):
        raise ConfigError(f"{name}: {len(first)} predictions but {len(second)} labels")
    if len(first) == 0:
        raise ConfigError(f"{name}: no galaxies given")


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """Temperature that minimises the negative log-likelihood of the labels.

    Parameters
    ----------
    logits : ndarray
        (n_galaxies, n_classes) raw validation outputs.
    labels : ndarray
        (n_galaxies,) true class indices.

    Returns
    -------
    float
        T > 0; divide logits by it before the softmax.  T > 1 softens an
        overconfident model.
    """
    # Imported here: scipy.optimize takes 0.13 s to import, which every
    # catalog worker would pay without ever fitting a temperature.
    from scipy.optimize import minimize_scalar

    logits = np.asarray(logits, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    _check_pairs("fit_temperature", logits, labels)
    rows = np.arange(len(labels))

    def nll(log_temperature: float) -> float:
        return -_log_softmax(logits / np.exp(log_temperature))[rows, labels].mean()

    result = minimize_scalar(nll, bounds=_LOG_TEMPERATURE_BOUNDS, method="bounded")
    return float(np.exp(result.x))


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    # By hand rather than scipy.special's: importing that costs every catalog
    # worker 0.15 s, for two lines.
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def calibrated_probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature``, as float64 (n_galaxies, n_classes)."""
    return np.exp(_log_softmax(np.asarray(logits, dtype=np.float64) / temperature))


def reliability_curve(
    probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean confidence, accuracy and count in equal-width confidence bins.

    Parameters
    ----------
    probabilities, labels : ndarray
        (n_galaxies, n_classes) probabilities and (n_galaxies,) true class indices.
    n_bins : int
        Number of bins over [0, 1].

    Returns
    -------
    confidence, accuracy, count : ndarray
        One value per bin; empty bins have NaN confidence and accuracy and
        count 0.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    labels = np.asarray(labels, dtype=int)
    _check_pairs("reliability_curve", probabilities, labels)
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    # A confidence of exactly 1 belongs to the last bin, not past it.
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / count
        accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / count
    return mean_confidence, accuracy, count


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, n_bins: int = 15) -> float:
    """Expected calibration error: the count-weighted mean |accuracy - confidence| over bins.

    Parameters
    ----------
    probabilities, labels : ndarray
        (n_galaxies, n_classes) probabilities and (n_galaxies,) true class indices.
    n_bins : int
        Number of equal-width confidence bins.

    Returns
    -------
    float
        In [0, 1]; 0 is perfectly calibrated.
    """
    confidence, accuracy, count = reliability_curve(probabilities, labels, n_bins)
    filled = count > 0
    return float(np.sum(count[filled] * np.abs(accuracy[filled] - confidence[filled])) / count.sum())


def coverage_accuracy_curve(confidence: np.ndarray, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Accuracy on the most confident galaxies, for every fraction kept.

    Parameters
    ----------
    confidence, correct : ndarray
        (n_galaxies,) confidence of each prediction, and whether it is right.

    Returns
    -------
    coverage : ndarray
        k / n for k = 1..n (galaxies kept, most confident first).
    accuracy : ndarray
        Accuracy on those k galaxies.
    threshold : ndarray
        The confidence of the k-th galaxy: keeping every galaxy at least
        this confident keeps (at least) those k.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    _check_pairs("coverage_accuracy_curve", confidence, correct)
    order = np.argsort(-confidence, kind="stable")
    kept = np.arange(1, len(order) + 1)
    return kept / len(order), np.cumsum(correct[order]) / kept, confidence[order]


def threshold_for_accuracy(
    confidence: np.ndarray, correct: np.ndarray, target_accuracy: float, min_count: int = 1
) -> tuple[float, float]:
    """Lowest confidence threshold whose kept galaxies reach a target accuracy.

    Parameters
    ----------
    confidence, correct : ndarray
        (n_galaxies,) calibrated confidence of each validation prediction, and whether it is right.
    target_accuracy : float
        Required accuracy on the kept galaxies, in (0, 1].
    min_count : int
        Fewest galaxies the kept set may hold.

    Returns
    -------
    threshold : float
        Keep galaxies with confidence >= threshold.  ``inf`` when no set of
        at least ``min_count`` most confident galaxies reaches the target.
    coverage : float
        Fraction of the validation galaxies kept at that threshold.
    """
    if not 0.0 < target_accuracy <= 1.0:
        raise ConfigError(f"target accuracy {target_accuracy} must lie in (0, 1]")
    coverage, accuracy, thresholds = coverage_accuracy_curve(confidence, correct)
    # Galaxies tied in confidence are kept or dropped together, so only the
    # last position of each run of equal thresholds is a real operating point.
    last_of_tie = np.append(thresholds[1:] != thresholds[:-1], True)
    enough = np.arange(1, len(thresholds) + 1) >= min_count
    reachable = np.flatnonzero((accuracy >= target_accuracy) & last_of_tie & enough)
    if reachable.size == 0:
        return float("inf"), 0.0
    best = reachable[-1]
    return float(thresholds[best]), float(coverage[best])


def class_thresholds(
    confidence: np.ndarray,
    correct: np.ndarray,
    predicted: np.ndarray,
    n_classes: int,
    target_purity: float,
    min_count: int = MIN_CLASS_COUNT,
) -> np.ndarray:
    """One confidence threshold per predicted class, each reaching a target purity.

    For class c the threshold is the lowest confidence t such that, among
    the validation galaxies predicted c with confidence >= t (at least
    ``min_count`` of them), the share truly of class c is at least
    ``target_purity``.

    Parameters
    ----------
    confidence, correct : ndarray
        (n_galaxies,) calibrated confidence of each validation prediction, and whether it is right.
    predicted : ndarray
        (n_galaxies,) predicted class index of each.
    n_classes : int
        Number of classes.
    target_purity : float
        Required purity of each class's confident set, in (0, 1].
    min_count : int
        Fewest validation galaxies a threshold may rest on.

    Returns
    -------
    ndarray
        (n_classes,) thresholds; ``inf`` for classes that never reach the
        target (all their galaxies go to the experts).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    predicted = np.asarray(predicted, dtype=int)
    _check_pairs("class_thresholds", confidence, correct)
    _check_pairs("class_thresholds", confidence, predicted)
    thresholds = np.full(n_classes, np.inf)
    for code in range(n_classes):
        members = predicted == code
        if members.sum() >= min_count:
            thresholds[code], _ = threshold_for_accuracy(confidence[members], correct[members], target_purity, min_count)
    return thresholds


def class_purity(
    confidence: np.ndarray, correct: np.ndarray, predicted: np.ndarray, thresholds: np.ndarray
) -> dict[str, np.ndarray]:
    """Coverage and purity of each predicted class's confident set.

    Parameters
    ----------
    confidence, correct : ndarray
        (n_galaxies,) calibrated confidence of each prediction, and whether it is right.
    predicted : ndarray
        (n_galaxies,) predicted class index.
    thresholds : ndarray
        (n_classes,) confidence threshold of each class.

    Returns
    -------
    dict of ndarray
        Each (n_classes,): ``n_predicted``, ``n_confident``, ``coverage``
        (confident share of the galaxies predicted in the class; NaN when
        none are) and ``purity`` (right share of the confident ones; NaN
        when none are confident).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    predicted = np.asarray(predicted, dtype=int)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    _check_pairs("class_purity", confidence, correct)
    _check_pairs("class_purity", confidence, predicted)
    n_classes = len(thresholds)
    confident = confidence >= thresholds[predicted]
    n_predicted = np.bincount(predicted, minlength=n_classes)
    n_confident = np.bincount(predicted[confident], minlength=n_classes)
    n_right = np.bincount(predicted[confident & correct], minlength=n_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return {
            "n_predicted": n_predicted,
            "n_confident": n_confident,
            "coverage": np.where(n_predicted > 0, n_confident / n_predicted, np.nan),
            "purity": np.where(n_confident > 0, n_right / n_confident, np.nan),
        }


@dataclass
class Triage:
    """Result of :func:`triage`.

    Attributes
    ----------
    confident : ndarray of bool
        True where the prediction is kept without review.
    priority : ndarray of float
        Expected information from an expert label (entropy of the predicted
        probabilities, in nats) for queued galaxies, NaN for confident ones.
    queue : ndarray of int
        Indices of the queued galaxies, most useful to label first.
    """

    confident: np.ndarray
    priority: np.ndarray
    queue: np.ndarray


def triage(probabilities: np.ndarray, min_confidence: float | np.ndarray) -> Triage:
    """Split predictions into confident ones and an ordered expert queue.

    The queue is ordered by the entropy of the predicted distribution: an
    expert label removes all of the model's uncertainty about that galaxy,
    so the galaxies whose predictions are most uncertain gain most.

    Parameters
    ----------
    probabilities : ndarray
        (n_galaxies, n_classes) calibrated probabilities.
    min_confidence : float or ndarray
        Predictions whose top probability is at least this are confident:
        one threshold for all, or (n_galaxies,) one per galaxy (that of its
        predicted class, see :func:`class_thresholds`).

    Returns
    -------
    Triage
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confident = probabilities.max(axis=1) >= min_confidence
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.sum(np.where(probabilities > 0, probabilities * np.log(probabilities), 0.0), axis=1)
    priority = np.where(confident, np.nan, entropy)
    queued = np.flatnonzero(~confident)
    queue = queued[np.argsort(-entropy[queued], kind="stable")]
    return Triage(confident=confident, priority=priority, queue=queue)
