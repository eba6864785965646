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


class EnsembleNetwork(nn.Module):
    """Average the logits of several networks with identical inputs and outputs.

    Parameters
    ----------
    members : sequence of torch.nn.Module
        The networks, each mapping (batch, bands, H, W) to (batch, outputs).
        Averaging logits (rather than probabilities) keeps one temperature
        valid for the whole ensemble and keeps the graph exportable.
    """

    def __init__(self, members: list[nn.Module]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return the mean of the members' logits."""
        return torch.stack([member(images) for member in self.members]).mean(dim=0)
