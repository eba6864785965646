"""Loss values on hand-checked cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tuningfork.errors import ConfigError
from tuningfork.training.losses import (
    balanced_class_weights,
    classification_loss,
    cumulative_mse,
    dirichlet_concentrations,
    dirichlet_multinomial_nll,
    vote_fractions,
    vote_loss,
)
from tuningfork.training.trees import GZ_DECALS, Answer, DecisionTree, Question

ONE_QUESTION = DecisionTree("one", (Question("q", "?", (Answer("a", "a", None), Answer("b", "b", None))),))
TWO_QUESTIONS = DecisionTree("two", (
    Question("q1", "?", (Answer("a", "a", "q2"), Answer("b", "b", None))),
    Question("q2", "?", (Answer("c", "c", None), Answer("d", "d", None))),
))


def _logits_for(concentrations):
    # Inverse of 1 + 99 * sigmoid(x).
    c = torch.tensor(concentrations, dtype=torch.float64)
    return torch.logit((c - 1) / 99)


def test_concentrations_lie_between_1_and_100():
    values = dirichlet_concentrations(torch.tensor([-1e3, 0.0, 1e3]))
    torch.testing.assert_close(values, torch.tensor([1.0, 50.5, 100.0]))


def test_dirichlet_multinomial_by_hand():
    # One vote for a, concentrations (1, 1): P = 1/2.
    logits = _logits_for([[1.0 + 1e-12, 1.0 + 1e-12]])
    nll = dirichlet_multinomial_nll(logits, torch.tensor([[1.0, 0.0]]), ONE_QUESTION)
    assert nll.item() == pytest.approx(math.log(2), rel=1e-6)
    # Votes (2, 1), concentrations (2, 1):
    # P = 3!/(2!1!) * G(3)/G(6) * G(4)/G(2) * G(2)/G(1) = 3 * 2/120 * 6 * 1 = 0.3.
    nll = dirichlet_multinomial_nll(_logits_for([[2.0, 1.0 + 1e-12]]), torch.tensor([[2.0, 1.0]]), ONE_QUESTION)
    assert nll.item() == pytest.approx(-math.log(0.3), rel=1e-6)


def test_unanswered_questions_add_nothing_to_the_dirichlet_loss():
    logits = torch.randn(1, 4, dtype=torch.float64)
    only_first = dirichlet_multinomial_nll(logits, torch.tensor([[0.0, 3.0, 0.0, 0.0]]), TWO_QUESTIONS)
    first_alone = dirichlet_multinomial_nll(logits[:, :2], torch.tensor([[0.0, 3.0]]), ONE_QUESTION)
    torch.testing.assert_close(only_first, first_alone)


@pytest.mark.parametrize("loss", ["dirichlet", "mse"])
def test_vote_fractions_sum_to_one_per_question(loss):
    fractions = vote_fractions(torch.randn(6, GZ_DECALS.num_answers), GZ_DECALS, loss)
    for block in GZ_DECALS.question_slices():
        torch.testing.assert_close(fractions[:, block].sum(dim=1), torch.ones(6))


def test_cumulative_mse_by_hand():
    # Prediction: softmax of zeros = 0.5 everywhere; cumulative (0.5, 0.5, 0.25, 0.25).
    # Target (1, 0 | 1, 0): cumulative (1, 0, 1, 0). Squared errors .25 .25 .5625 .0625: mean 0.28125.
    loss = cumulative_mse(torch.zeros(1, 4), torch.tensor([[1.0, 0.0, 1.0, 0.0]]), TWO_QUESTIONS)
    assert loss.item() == pytest.approx(0.28125)


def test_cumulative_mse_ignores_unanswered_follow_up_questions():
    # "b" ends the tree, so the NaN second question is never reached.
    logits = torch.tensor([[-20.0, 20.0, 0.0, 0.0]])
    loss = cumulative_mse(logits, torch.tensor([[0.0, 1.0, float("nan"), float("nan")]]), TWO_QUESTIONS)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_unknown_vote_loss():
    with pytest.raises(ConfigError, match="unknown vote loss 'l1'"):
        vote_loss(torch.zeros(1, 2), torch.zeros(1, 2), ONE_QUESTION, "l1")


def test_cross_entropy_with_smoothing_and_weights_by_hand():
    # Uniform logits over 4 classes: ln 4 whatever the smoothing.
    assert classification_loss(torch.zeros(2, 4), torch.tensor([0, 3]), 0.1).item() == pytest.approx(math.log(4))
    # Logits (ln 3, 0): p = (0.75, 0.25). Smoothing 0.2 -> target (0.9, 0.1).
    logits = torch.tensor([[math.log(3.0), 0.0]])
    expected = -(0.9 * math.log(0.75) + 0.1 * math.log(0.25))
    assert classification_loss(logits, torch.tensor([0]), 0.2).item() == pytest.approx(expected)
    # Class weights: weighted mean over the batch.
    weighted = classification_loss(torch.zeros(2, 2), torch.tensor([0, 1]), 0.0, torch.tensor([3.0, 1.0]))
    assert weighted.item() == pytest.approx(math.log(2))


def test_balanced_class_weights():
    weights = balanced_class_weights(np.array([0, 0, 0, 1]), 3)
    np.testing.assert_allclose(weights, [4 / 6, 4 / 2, 0.0])
