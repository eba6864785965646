"""Losses for class labels and Galaxy Zoo votes.

Class labels use cross-entropy with label smoothing (and optional class
weights).  Galaxy Zoo votes use one of two losses over a
:class:`~tuningfork.training.trees.DecisionTree`:

* ``"dirichlet"`` when vote *counts* are known: each question's answers are
  modelled as a Dirichlet-multinomial draw, as Zoobot does (Walmsley et al.
  2022).  The network predicts Dirichlet concentrations; a question nobody
  answered contributes nothing, and a galaxy with many votes weighs more than
  one with few.
* ``"mse"`` when only *fractions* are known: the mean squared error of the
  cumulative fractions, whose square root is the Galaxy Zoo challenge's RMSE.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .trees import DecisionTree

#: Vote losses by name.
VOTE_LOSSES = ("dirichlet", "mse")

# Zoobot's range for the concentrations: at least 1 keeps each Dirichlet
# unimodal, at most 100 stops one galaxy's confident answer from dominating.
_MIN_CONCENTRATION = 1.0
_MAX_CONCENTRATION = 100.0


def classification_loss(
    logits: torch.Tensor,
    targets: torch.Tensor,
    label_smoothing: float = 0.0,
    class_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean cross-entropy with label smoothing and class weights.

    Parameters
    ----------
    logits : Tensor
        (batch, n_classes).
    targets : Tensor
        (batch,) class indices, or (batch, n_classes) class probabilities
        (as mixup and cutmix produce).
    label_smoothing : float
        Mass moved from the target class to all classes uniformly.
    class_weights : Tensor, optional
        (n_classes,) weight of each class, e.g. from :func:`balanced_class_weights`.
        It weighs each *galaxy* by its true class (soft targets: their
        expected weight); the mean is taken over these weights.

    Returns
    -------
    Tensor
        Scalar loss.

    Notes
    -----
    ``F.cross_entropy(weight=..., label_smoothing=...)`` is not used: it
    weighs the smoothing term of every galaxy by the weights of all classes,
    so that with inverse-frequency weights the loss of a perfectly
    recognised elliptical is lowest when it predicts the rarest class (on
    gz1 that made the network call everything "unknown").
    """
    per_galaxy = F.cross_entropy(logits, targets, label_smoothing=label_smoothing, reduction="none")
    if class_weights is None:
        return per_galaxy.mean()
    weights = class_weights[targets] if targets.ndim == 1 else targets.to(class_weights.dtype) @ class_weights
    return (per_galaxy * weights).sum() / weights.sum().clamp_min(torch.finfo(weights.dtype).tiny)


def balanced_class_weights(labels: np.ndarray, n_classes: int, power: float = 1.0) -> np.ndarray:
    """Class weights proportional to ``frequency ** -power`` (mean weight one per galaxy).

    Parameters
    ----------
    labels : ndarray
        Integer class index of every training galaxy.
    n_classes : int
        Number of classes.
    power : float
        1 gives inverse-frequency weights (scikit-learn's "balanced");
        0.5 the softer square root of the inverse frequency, which on gz1
        (largest / smallest class 82) weighs the rarest class 9 times the
        largest instead of 82 times.

    Returns
    -------
    ndarray
        (n_classes,) float32; a class absent from ``labels`` gets weight 0.
    """
    counts = np.bincount(np.asarray(labels), minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes, dtype=np.float64)
    weights[present] = counts[present] ** -float(power)
    # Mean one per galaxy keeps the loss, and so the learning rate, on the unweighted scale.
    weights *= counts.sum() / (counts * weights).sum()
    return weights.astype(np.float32)


def imbalance_ratio(labels: np.ndarray, n_classes: int) -> float:
    """Galaxies in the largest class over those in the smallest (inf when a class is absent).

    Parameters
    ----------
    labels, n_classes : ndarray, int
        As for :func:`balanced_class_weights`.

    Returns
    -------
    float
    """
    counts = np.bincount(np.asarray(labels), minlength=n_classes)
    return float(counts.max() / counts.min()) if counts.min() > 0 else math.inf


def dirichlet_concentrations(logits: torch.Tensor) -> torch.Tensor:
    """Map raw outputs to Dirichlet concentrations in [1, 100]."""
    return _MIN_CONCENTRATION + (_MAX_CONCENTRATION - _MIN_CONCENTRATION) * torch.sigmoid(logits)


def vote_fractions(logits: torch.Tensor, tree: DecisionTree, loss: str) -> torch.Tensor:
    """Per-question answer fractions predicted from raw outputs.

    Parameters
    ----------
    logits : Tensor
        (batch, tree.num_answers) raw network outputs.
    tree : DecisionTree
        The question tree.
    loss : {"dirichlet", "mse"}
        The loss the network was trained with, which fixes how its outputs
        are read: Dirichlet means (concentrations over their sum) or a
        softmax per question.

    Returns
    -------
    Tensor
        (batch, tree.num_answers); each question's answers sum to one.
    """
    _check_vote_loss(loss)
    blocks = []
    for block in tree.question_slices():
        if loss == "dirichlet":
            concentration = dirichlet_concentrations(logits[:, block])
            blocks.append(concentration / concentration.sum(dim=1, keepdim=True))
        else:
            blocks.append(torch.softmax(logits[:, block], dim=1))
    return torch.cat(blocks, dim=1)


def dirichlet_multinomial_nll(logits: torch.Tensor, counts: torch.Tensor, tree: DecisionTree) -> torch.Tensor:
    """Negative log-likelihood of vote counts under a Dirichlet-multinomial per question.

    For one question with counts ``k`` (total ``N``) and concentrations
    ``a`` (total ``A``)::

        P(k) = N! / prod(k_i!) * Gamma(A) / Gamma(N + A) * prod(Gamma(k_i + a_i) / Gamma(a_i))

    Parameters
    ----------
    logits : Tensor
        (batch, tree.num_answers) raw outputs, mapped to concentrations by
        :func:`dirichlet_concentrations`.
    counts : Tensor
        (batch, tree.num_answers) vote counts (zeros where a question was not
        asked).
    tree : DecisionTree
        The question tree.

    Returns
    -------
    Tensor
        Scalar: the mean over galaxies of the sum over questions.
    """
    concentrations = dirichlet_concentrations(logits)
    counts = counts.to(concentrations.dtype)
    total = torch.zeros(logits.shape[0], dtype=concentrations.dtype, device=logits.device)
    for block in tree.question_slices():
        k, a = counts[:, block], concentrations[:, block]
        n, a_sum = k.sum(dim=1), a.sum(dim=1)
        log_prob = (
            torch.lgamma(n + 1)
            - torch.lgamma(k + 1).sum(dim=1)
            + torch.lgamma(a_sum)
            - torch.lgamma(n + a_sum)
            + (torch.lgamma(k + a) - torch.lgamma(a)).sum(dim=1)
        )
        total = total - log_prob
    return total.mean()


def cumulative_mse(logits: torch.Tensor, fractions: torch.Tensor, tree: DecisionTree) -> torch.Tensor:
    """Mean squared error of the cumulative (challenge-style) vote fractions.

    Parameters
    ----------
    logits : Tensor
        (batch, tree.num_answers) raw outputs, read as a softmax per question.
    fractions : Tensor
        (batch, tree.num_answers) target fractions normalised per question;
        NaN where nobody answered (those questions are then never reached in
        the target, so they count as zero).
    tree : DecisionTree
        The question tree.

    Returns
    -------
    Tensor
        Scalar; its square root is the Galaxy Zoo challenge RMSE.
    """
    predicted = tree.cumulative(vote_fractions(logits, tree, "mse"))
    target = tree.cumulative(torch.nan_to_num(fractions.to(predicted.dtype)))
    return F.mse_loss(predicted, target)


def vote_loss(logits: torch.Tensor, votes: torch.Tensor, tree: DecisionTree, loss: str) -> torch.Tensor:
    """Dispatch to the vote loss named ``loss`` (see :data:`VOTE_LOSSES`)."""
    _check_vote_loss(loss)
    if loss == "dirichlet":
        return dirichlet_multinomial_nll(logits, votes, tree)
    return cumulative_mse(logits, votes, tree)


def _check_vote_loss(loss: str) -> None:
    if loss not in VOTE_LOSSES:
        raise ConfigError(f"unknown vote loss '{loss}' (choose from {', '.join(VOTE_LOSSES)})")
