"""Network definitions and model folders.

:func:`build_network` makes any supported architecture by name:
``"rotinv"`` (:class:`RotationInvariantNet`, the default), ``"hybrid"``
(:func:`hybrid_net`), or any timm model name (:func:`timm_backbone`).
:func:`save_model` / :func:`load_model` write and read a model folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from .backbones import timm_backbone
from .ensemble import EnsembleNetwork
from .folder import LoadedModel, ModelConfig, load_model, save_model
from .hybrid import hybrid_net
from .rotinv import RotationInvariantNet

#: The architecture used when none is named.
DEFAULT_ARCHITECTURE = "rotinv"


def build_network(
    architecture: str,
    num_outputs: int,
    in_channels: int = 3,
    image_size: int = 64,
    weights: str | Path | None = None,
    **options: Any,
) -> nn.Module:
    """Create a network by architecture name.

    Parameters
    ----------
    architecture : str
        ``"rotinv"``, ``"hybrid"`` or a timm model name.
    num_outputs : int
        Number of logits.
    in_channels : int
        Bands of the input images.
    image_size : int
        Side of the square input, in pixels.
    weights : str or Path, optional
        Local pretrained-weights file; timm backbones only.
    **options
        Architecture-specific keyword arguments (e.g. ``group="c4"`` for
        rotinv, ``drop_path_rate`` for hybrid and timm models), and
        ``ensemble=K`` for an :class:`EnsembleNetwork` of K such networks.

    Returns
    -------
    torch.nn.Module
    """
    from ..errors import ConfigError

    members = options.pop("ensemble", 1)
    if not isinstance(members, int) or members < 1:
        raise ConfigError(f"ensemble must be a positive number of networks, got {members!r}")
    if members > 1:
        return EnsembleNetwork([
            build_network(architecture, num_outputs, in_channels, image_size, weights, **options)
            for _ in range(members)
        ])
    if architecture in ("rotinv", "hybrid") and weights is not None:
        raise ConfigError(f"--weights applies to timm backbones only, not to '{architecture}'")
    try:
        if architecture == "rotinv":
            return RotationInvariantNet(num_outputs, in_channels=in_channels, image_size=image_size, **options)
        if architecture == "hybrid":
            return hybrid_net(num_outputs, in_channels=in_channels, image_size=image_size, **options)
        if architecture == "astropt":
            # Self-supervised (tuningfork pretrain): no logits, num_outputs is unused.
            from ..embeddings.astropt import AstroPT, AstroPTConfig

            return AstroPT(AstroPTConfig(bands=in_channels, image_size=image_size, **options))
        if architecture == "denoising_autoencoder":
            # Fully convolutional (tuningfork denoise train): any image size, outputs = bands.
            from ..clustering.autoencoder import DenoisingAutoencoder

            return DenoisingAutoencoder(in_channels, **options)
        return timm_backbone(architecture, num_outputs, in_channels=in_channels, weights=weights, **options)
    except TypeError as error:
        raise ConfigError(f"architecture '{architecture}': bad option ({error})") from error


__all__ = [
    "DEFAULT_ARCHITECTURE",
    "EnsembleNetwork",
    "LoadedModel",
    "ModelConfig",
    "RotationInvariantNet",
    "build_network",
    "hybrid_net",
    "load_model",
    "save_model",
    "timm_backbone",
]
