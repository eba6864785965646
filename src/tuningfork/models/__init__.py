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

import lazy_loader

# Submodules load on first use, so that `tuningfork --help` and a notebook's
# `import tuningfork.X` do not pay for torch and Lightning until they are needed.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submodules=["nets"],
    submod_attrs={
        "conditions": ["ConditionSpace"],
        "encoder": ["Encoder", "embed_arrays", "forward_in_batches", "resolve_device"],
        "encoding": ["AstroPTEncoder", "AutoencoderEncoder", "SupervisedEncoder", "TimmEncoder", "encoder_from_model", "load_encoder", "network_features"],
        "folder": ["LoadedModel", "ModelConfig", "StoredModel", "copy_matching_weights", "load_model", "open_model", "read_config", "save_model"],
        "nets.astropt": ["AstroPT", "AstroPTConfig", "MODEL_SIZES", "astropt_model_config"],
        "nets.autoencoder": ["DenoisingAutoencoder", "autoencoder_model_config"],
        "nets.descriptors": ["MorphologyEncoder"],
        "nets.ensemble": ["EnsembleNetwork"],
        "nets.hybrid": ["hybrid_net"],
        "nets.rotinv": ["RotationInvariantNet"],
        "nets.timm_backbone": ["timm_backbone"],
        "nets.unet": ["ConditionalUNet", "UNetConfig"],
        "shipped": ["ShippedModel", "check_shipped", "resolve_model_folder", "shipped_models"],
        "registry": ["TIMM_PREFIX", "create_model", "list_models", "parse_model_name", "register_model"],
    },
)

#: The architecture used when none is named.
DEFAULT_ARCHITECTURE = "rotinv"
__all__ += ["DEFAULT_ARCHITECTURE"]
