"""Fine-tuning a trained network: a frozen encoder, or learning rates that decay with depth.

Zoobot's recipe for adapting a Galaxy Zoo model to new labels: train only
the head on the frozen encoder when labels are few, or train everything with
layer-wise learning-rate decay (each block closer to the input learns
``decay`` times slower than the one above it, so the general features of the
first layers move least).
"""

from __future__ import annotations

from torch import nn

from ..errors import ConfigError
from ..models import EnsembleNetwork


def classifier_head(network: nn.Module) -> nn.Module:
    """The output block of a network: its ``head`` (tuningfork, most timm models) or timm's classifier.

    Parameters
    ----------
    network : torch.nn.Module

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ConfigError
        For a network with neither.
    """
    head = getattr(network, "head", None)
    if isinstance(head, nn.Module):
        return head
    if hasattr(network, "get_classifier"):
        return network.get_classifier()
    raise ConfigError(f"{type(network).__name__} has no head to fine-tune on its own")


def _members(network: nn.Module) -> list[nn.Module]:
    return list(network.members) if isinstance(network, EnsembleNetwork) else [network]


def encoder_modules(network: nn.Module) -> list[nn.Module]:
    """The direct children of each member that are not (and do not hold) its head."""
    modules = []
    for member in _members(network):
        head = classifier_head(member)
        head_parameters = {id(parameter) for parameter in head.parameters()}
        modules += [child for child in member.children()
                    if child is not head and not any(id(p) in head_parameters for p in child.parameters())]
    return modules


def freeze_encoder(network: nn.Module) -> int:
    """Stop gradients to everything but the head, in place.

    Parameters
    ----------
    network : torch.nn.Module

    Returns
    -------
    int
        Number of trainable parameters left (the head's).
    """
    for module in encoder_modules(network):
        module.requires_grad_(False)
    return sum(parameter.numel() for parameter in network.parameters() if parameter.requires_grad)


def _depth_key(name: str, network: nn.Module) -> str:
    """The block a parameter belongs to: ``stages.2`` inside a container, else the top-level child."""
    parts = name.split(".")
    child = getattr(network, parts[0])
    if isinstance(child, (nn.Sequential, nn.ModuleList)) and len(parts) > 2:
        return ".".join(parts[:2])
    return parts[0]


def layer_decay_groups(network: nn.Module, learning_rate: float, decay: float) -> list[dict]:
    """AdamW parameter groups whose learning rate falls by ``decay`` per block below the head.

    Blocks are taken in the order the network defines them (input first):
    the entries of a top-level ``Sequential``/``ModuleList`` (a CNN's layers,
    a transformer's stages) one by one, every other top-level child as one.
    The head learns at ``learning_rate``; the block below it at
    ``learning_rate * decay``, and so on.  Frozen parameters are left out.

    Parameters
    ----------
    network : torch.nn.Module
    learning_rate : float
        The head's learning rate.
    decay : float
        In (0, 1]; 1 gives every block the same rate.

    Returns
    -------
    list of dict
        ``{"params": [...], "lr": ...}`` groups, for ``torch.optim.AdamW``.
    """
    if not 0.0 < decay <= 1.0:
        raise ConfigError(f"layer decay must lie in (0, 1], got {decay}")
    groups: list[dict] = []
    for member in _members(network):
        head_ids = {id(parameter) for parameter in classifier_head(member).parameters()}
        blocks: dict[str, list] = {}
        head = []
        for name, parameter in member.named_parameters():
            if not parameter.requires_grad:
                continue
            if id(parameter) in head_ids:
                head.append(parameter)
            else:
                blocks.setdefault(_depth_key(name, member), []).append(parameter)
        depth = len(blocks)
        for position, parameters in enumerate(blocks.values()):
            groups.append({"params": parameters, "lr": learning_rate * decay ** (depth - position)})
        if head:
            groups.append({"params": head, "lr": learning_rate})
    return groups
