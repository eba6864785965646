"""Batched inference: a network over an image array, without gradients, optionally with test-time augmentation.

Apart from the Lightning setup of :mod:`tuningfork.models.runtime`, so that
the processes that only predict (catalog workers, ``predict``) never import
Lightning; torch is imported only for a torch network, so that an ONNX
Runtime network from a stored graph runs without it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..preprocessing import D4_ELEMENTS, d4_apply_torch, d4_element
from .export import OnnxRuntimeNetwork

if TYPE_CHECKING:
    import torch


def tta_elements(network: torch.nn.Module | OnnxRuntimeNetwork) -> tuple[int, ...]:
    """The D4 elements worth averaging over for a network.

    A rotation-invariant network already averages over its own group, so
    only one element per coset is needed: the mirror image for a ``c4``
    network, nothing more for a ``d4`` one.  Other networks get all eight.
    An ensemble is judged by its members.

    Parameters
    ----------
    network : torch.nn.Module or OnnxRuntimeNetwork

    Returns
    -------
    tuple of int
        Indices into :data:`~tuningfork.preprocessing.D4_ELEMENTS`.
    """
    if isinstance(network, OnnxRuntimeNetwork):
        return network.elements
    from .nets.ensemble import EnsembleNetwork
    from .nets.rotinv import RotationInvariantNet

    if isinstance(network, EnsembleNetwork):
        return tta_elements(network.members[0])
    if isinstance(network, RotationInvariantNet):
        return (0,) if network.group == "d4" else (0, d4_element(0, True))
    return D4_ELEMENTS


def to_inference_layout(network: torch.nn.Module) -> torch.nn.Module:
    """Put a network in evaluation mode with channels-last weights, in place.

    oneDNN's CPU convolutions and pooling run about 30% faster on
    channels-last tensors (431 -> 553 images/s for the default ``rotinv`` at
    64 px on 2 cores); the results are the same up to float summation order.

    Parameters
    ----------
    network : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        The same network.
    """
    import torch

    return network.eval().to(memory_format=torch.channels_last)


def network_logits(
    network: torch.nn.Module | OnnxRuntimeNetwork, images: np.ndarray, batch_size: int = 256, tta: bool = False
) -> np.ndarray:
    """Run a network over an image array in batches, without gradients.

    Parameters
    ----------
    network : torch.nn.Module or OnnxRuntimeNetwork
        Put in evaluation mode here (a torch network); it runs on the
        device its weights are on.
    images : ndarray
        float32 (n, bands, H, W); not modified.
    batch_size : int
        Images per forward pass.
    tta : bool
        Average the logits over D4 (test-time augmentation), using only the
        elements :func:`tta_elements` says the network does not already
        pool over.

    Returns
    -------
    ndarray
        float32 (n, outputs).
    """
    if isinstance(network, OnnxRuntimeNetwork):
        return network.logits(images, batch_size, tta)
    import torch

    device = torch.device("cpu")
    if isinstance(network, torch.nn.Module):
        to_inference_layout(network)
        device = next(network.parameters()).device
    elements = tta_elements(network) if tta else (0,)
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
            batch = batch.contiguous(memory_format=torch.channels_last)
            logits = sum(network(d4_apply_torch(batch, element)) for element in elements) / len(elements)
            outputs.append(logits.float().cpu().numpy())
    return np.concatenate(outputs) if outputs else np.zeros((0, 0), dtype=np.float32)
