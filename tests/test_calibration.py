"""Temperature scaling, ECE, coverage-accuracy and triage."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import softmax

from tuningfork.errors import ConfigError
from tuningfork.training.calibration import (
    calibrated_probabilities,
    class_purity,
    class_thresholds,
    coverage_accuracy_curve,
    expected_calibration_error,
    fit_temperature,
    reliability_curve,
    threshold_for_accuracy,
    triage,
)


def _overconfident_model(n=4000, classes=3, sharpening=3.0, seed=0):
    """Labels drawn from softmax(z); the model reports logits sharpening * z."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(scale=1.5, size=(n, classes))
    labels = np.array([rng.choice(classes, p=p) for p in softmax(true_logits, axis=1)])
    return sharpening * true_logits, labels


def test_temperature_scaling_lowers_ece_of_an_overconfident_model():
    logits, labels = _overconfident_model()
    temperature = fit_temperature(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.15)
    before = expected_calibration_error(calibrated_probabilities(logits), labels)
    after = expected_calibration_error(calibrated_probabilities(logits, temperature), labels)
    assert before > 0.1
    assert after < 0.03


def test_temperature_does_not_change_predictions():
    logits, _ = _overconfident_model(n=50)
    np.testing.assert_array_equal(
        calibrated_probabilities(logits, 2.5).argmax(1), calibrated_probabilities(logits).argmax(1)
    )


def test_ece_by_hand():
    # Every prediction at confidence 1.0, half of them right: ECE 0.5.
    probabilities = np.array([[1.0, 0.0]] * 4)
    assert expected_calibration_error(probabilities, np.array([0, 0, 1, 1])) == pytest.approx(0.5)
    # Two bins: 0.6 (right, right) and 0.9 (right, wrong): (2*0.4 + 2*0.4) / 4.
    probabilities = np.array([[0.6, 0.4], [0.6, 0.4], [0.9, 0.1], [0.9, 0.1]])
    assert expected_calibration_error(probabilities, np.array([0, 0, 0, 1]), n_bins=10) == pytest.approx(0.4)


def test_reliability_curve_counts_and_empty_bins():
    probabilities = np.array([[0.55, 0.45], [0.95, 0.05]])
    confidence, accuracy, count = reliability_curve(probabilities, np.array([0, 1]), n_bins=10)
    assert count.sum() == 2 and count[5] == 1 and count[9] == 1
    assert np.isnan(confidence[0]) and accuracy[9] == 0.0


def test_coverage_accuracy_curve_by_hand():
    confidence = np.array([0.9, 0.6, 0.8, 0.7])
    correct = np.array([True, False, True, False])
    coverage, accuracy, threshold = coverage_accuracy_curve(confidence, correct)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(accuracy, [1.0, 1.0, 2 / 3, 0.5])
    np.testing.assert_allclose(threshold, [0.9, 0.8, 0.7, 0.6])


def test_threshold_for_accuracy_arithmetic():
    confidence = np.array([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, True, False, True, False])
    assert threshold_for_accuracy(confidence, correct, 1.0) == (0.9, 0.5)
    # Keeping the top five gives 4/5 = 0.8.
    assert threshold_for_accuracy(confidence, correct, 0.8) == (0.7, pytest.approx(5 / 6))
    # Not even the most confident one is right.
    assert threshold_for_accuracy(np.array([0.9, 0.8]), np.array([False, True]), 0.99) == (float("inf"), 0.0)


def test_tied_confidences_are_kept_or_dropped_together():
    confidence = np.array([0.9, 0.9, 0.5])
    correct = np.array([True, False, True])
    # The first 0.9 alone would be 100% right, but a threshold cannot split the tie.
    assert threshold_for_accuracy(confidence, correct, 1.0) == (float("inf"), 0.0)


def test_target_accuracy_must_be_a_probability():
    with pytest.raises(ConfigError, match="target accuracy"):
        threshold_for_accuracy(np.array([0.5]), np.array([True]), 1.5)


def test_triage_split_and_queue_order():
    probabilities = np.array([
        [0.98, 0.01, 0.01],   # confident
        [0.40, 0.30, 0.30],   # most uncertain: first in the queue
        [0.70, 0.20, 0.10],
        [0.50, 0.45, 0.05],
        [0.95, 0.05, 0.00],   # confident
    ])
    result = triage(probabilities, min_confidence=0.9)
    np.testing.assert_array_equal(result.confident, [True, False, False, False, True])
    np.testing.assert_array_equal(result.queue, [1, 3, 2])
    assert np.isnan(result.priority[[0, 4]]).all()
    assert result.priority[1] == pytest.approx(-(0.4 * np.log(0.4) + 2 * 0.3 * np.log(0.3)))
    assert result.confident.sum() + len(result.queue) == len(probabilities)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ConfigError, match="3 predictions but 2 labels"):
        fit_temperature(np.zeros((3, 2)), np.array([0, 1]))


def _two_class_predictions(n, rng):
    """Predictions of two classes: class 0 is right as often as its confidence says,
    class 1 (the noisy one) 10 points less often."""
    predicted = rng.integers(0, 2, n)
    confidence = rng.uniform(0.5, 1.0, n)
    right_rate = confidence - 0.1 * predicted
    return confidence, rng.random(n) < right_rate, predicted


def test_class_thresholds_reach_the_purity_in_each_class_on_new_draws():
    rng = np.random.default_rng(1)
    target = 0.85
    thresholds = class_thresholds(*_two_class_predictions(4000, rng), 2, target)
    # Purity above t is (1 + t) / 2 for the clean class, 0.1 less for the noisy
    # one: thresholds near 0.7 and 0.9.
    assert 0.65 < thresholds[0] < 0.75 and 0.85 < thresholds[1] < 0.95
    purities = np.array([class_purity(*_two_class_predictions(4000, rng), thresholds)["purity"] for _ in range(20)])
    # Over 20 held-out draws each class is on target on average, and no draw falls
    # below it by more than three standard errors of a purity on these counts.
    assert (purities.mean(axis=0) >= target - 0.01).all()
    assert (purities.min(axis=0) >= target - 3 * np.sqrt(target * (1 - target) / 200)).all()


def test_one_global_threshold_lets_the_noisy_class_below_the_target():
    rng = np.random.default_rng(2)
    confidence, correct, predicted = _two_class_predictions(4000, rng)
    threshold, _ = threshold_for_accuracy(confidence, correct, 0.85)
    purity = class_purity(confidence, correct, predicted, np.full(2, threshold))["purity"]
    assert purity[1] < 0.82 and purity[0] > 0.85


def test_a_class_without_enough_galaxies_gets_no_threshold():
    confidence = np.array([0.99] * 30 + [0.95] * 5)
    correct = np.ones(35, dtype=bool)
    predicted = np.array([0] * 30 + [1] * 5)
    thresholds = class_thresholds(confidence, correct, predicted, 3, 0.9, min_count=20)
    assert thresholds[0] == 0.99 and np.isinf(thresholds[1:]).all()
    # The minimum count applies within a class too: 10 right ones are not enough.
    assert np.isinf(class_thresholds(confidence[:10], correct[:10], predicted[:10], 1, 0.9, min_count=20)).all()


def test_threshold_for_accuracy_minimum_count():
    confidence = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, False, True])
    assert threshold_for_accuracy(confidence, correct, 1.0) == (0.8, 0.5)
    assert threshold_for_accuracy(confidence, correct, 1.0, min_count=3) == (float("inf"), 0.0)
    assert threshold_for_accuracy(confidence, correct, 0.75, min_count=3) == (0.6, 1.0)


def test_class_purity_by_hand():
    confidence = np.array([0.9, 0.8, 0.7, 0.95, 0.6])
    correct = np.array([True, False, True, True, False])
    predicted = np.array([0, 0, 0, 1, 1])
    scores = class_purity(confidence, correct, predicted, np.array([0.75, 0.5, np.inf]))
    np.testing.assert_array_equal(scores["n_predicted"], [3, 2, 0])
    np.testing.assert_array_equal(scores["n_confident"], [2, 2, 0])
    np.testing.assert_allclose(scores["coverage"], [2 / 3, 1.0, np.nan])
    np.testing.assert_allclose(scores["purity"], [0.5, 0.5, np.nan])


def test_triage_with_one_threshold_per_galaxy():
    probabilities = np.array([[0.8, 0.2], [0.8, 0.2], [0.3, 0.7]])
    result = triage(probabilities, np.array([0.9, 0.5, 0.5]))
    np.testing.assert_array_equal(result.confident, [False, True, True])
