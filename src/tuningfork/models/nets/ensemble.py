"""An ensemble of independently trained networks of one architecture.

Dieleman, Willett & Dambre (2015) averaged the predictions of 17 networks
for their winning Galaxy Zoo entry: with a few thousand labelled galaxies a
single network's errors are dominated by variance (which weights it happened
to find), and averaging networks trained from different seeds removes much
of it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..registry import ENSEMBLE, register_model


@register_model(ENSEMBLE)
class EnsembleNetwork(nn.Module):
    """Average the logits of several networks with identical inputs and outputs.

    Built by :func:`~tuningfork.models.create_model` with ``ensemble=K``.
    Backbone and head are separate as in every tuningfork network:
    :meth:`forward_features` concatenates the members' features along the
    channel axis, :meth:`forward_head` applies each member's head to its
    part, and ``forward(x) == forward_head(forward_features(x))``.

    Parameters
    ----------
    members : sequence of torch.nn.Module
        The networks, each mapping (batch, bands, H, W) to (batch, outputs)
        and having ``forward_features`` / ``forward_head`` (tuningfork and
        timm networks do).  Averaging logits (rather than probabilities)
        keeps one temperature valid for the whole ensemble and keeps the
        graph exportable.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def _sizes(self, features: torch.Tensor) -> list[int]:
        # Members share one architecture: equal parts along the channel axis.
        return [features.shape[1] // len(self.members)] * len(self.members)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        """Every member's backbone features, concatenated along axis 1."""
        return torch.cat([member.forward_features(images) for member in self.members], dim=1)

    def forward_head(self, features: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Mean of the members' logits, or (``pre_logits``) their pre-logit features concatenated.

        Parameters
        ----------
        features : Tensor
            From :meth:`forward_features`.
        pre_logits : bool
            Return the members' pre-logit features side by side instead.

        Returns
        -------
        Tensor
        """
        parts = torch.split(features, self._sizes(features), dim=1)
        outputs = [member.forward_head(part, pre_logits=pre_logits) for member, part in zip(self.members, parts)]
        if pre_logits:
            return torch.cat(outputs, dim=1)
        return torch.stack(outputs).mean(dim=0)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the mean of the members' logits."""
        return self.forward_head(self.forward_features(images))
