"""Every network of tuningfork and the contracts around them.

* :mod:`.registry`: :func:`create_model` builds any architecture by name
  (``"rotinv"``, the default; ``"hybrid"``; ``"astropt"``;
  ``"denoising_autoencoder"``; ``"conditional-diffusion"``;
  ``"morphology"``; or any timm name), each registered by its own file in
  :mod:`.nets` with :func:`register_model`.
* :mod:`.folder`: one model-folder format; :func:`save_model` /
  :func:`load_model` write and read every kind of model.
* :mod:`.encoder` / :mod:`.encoding`: the :class:`Encoder` contract and
  :func:`load_encoder`, which opens ``"morphology"``, ``"timm:NAME"`` or any
  model folder.
"""

from __future__ import annotations

from . import nets
from .conditions import ConditionSpace
from .encoder import Encoder, embed_arrays, forward_in_batches, resolve_device
from .encoding import (
    AstroPTEncoder,
    AutoencoderEncoder,
    SupervisedEncoder,
    TimmEncoder,
    encoder_from_model,
    load_encoder,
    network_features,
)
from .folder import (
    LoadedModel,
    ModelConfig,
    copy_matching_weights,
    load_model,
    read_config,
    save_model,
)
from .nets.astropt import MODEL_SIZES, AstroPT, AstroPTConfig, astropt_model_config
from .nets.autoencoder import DenoisingAutoencoder, autoencoder_model_config
from .nets.descriptors import MorphologyEncoder
from .nets.ensemble import EnsembleNetwork
from .nets.hybrid import hybrid_net
from .nets.rotinv import RotationInvariantNet
from .nets.timm_backbone import timm_backbone
from .nets.unet import ConditionalUNet, UNetConfig
from .registry import TIMM_PREFIX, create_model, list_models, parse_model_name, register_model

#: The architecture used when none is named.
DEFAULT_ARCHITECTURE = "rotinv"

__all__ = [
    "DEFAULT_ARCHITECTURE",
    "MODEL_SIZES",
    "TIMM_PREFIX",
    "AstroPT",
    "AstroPTConfig",
    "AstroPTEncoder",
    "AutoencoderEncoder",
    "ConditionSpace",
    "ConditionalUNet",
    "DenoisingAutoencoder",
    "Encoder",
    "EnsembleNetwork",
    "LoadedModel",
    "ModelConfig",
    "MorphologyEncoder",
    "RotationInvariantNet",
    "SupervisedEncoder",
    "TimmEncoder",
    "UNetConfig",
    "astropt_model_config",
    "autoencoder_model_config",
    "copy_matching_weights",
    "create_model",
    "embed_arrays",
    "encoder_from_model",
    "forward_in_batches",
    "hybrid_net",
    "list_models",
    "load_encoder",
    "load_model",
    "nets",
    "network_features",
    "parse_model_name",
    "read_config",
    "register_model",
    "resolve_device",
    "save_model",
    "timm_backbone",
]
