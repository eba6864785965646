"""Any timm backbone by name, optionally with pretrained weights from a local file.

Nothing is downloaded: pretrained weights come from a file the user gives
(safetensors or a PyTorch checkpoint, e.g. one saved from ``timm`` on a
machine with network access).  The file is read with timm's own helpers and
adapted the way timm adapts its hub weights: the classifier is left freshly
initialised when its shape differs from the file's (another number of
classes), and the first convolution is adapted when the number of bands
differs from three.  Any other mismatch means the file belongs to another
architecture and is reported, never silently ignored.
"""

from __future__ import annotations

from pathlib import Path

from torch import nn

from ...errors import ConfigError, CorruptFileError, MissingFileError
from ..registry import TIMM, register_model


@register_model(TIMM)
def timm_backbone(
    name: str,
    num_outputs: int,
    in_channels: int = 3,
    image_size: int | None = None,
    weights: str | Path | None = None,
    drop_path_rate: float = 0.0,
    dropout: float = 0.0,
) -> nn.Module:
    """Create a timm model with a fresh head of ``num_outputs`` logits.

    Parameters
    ----------
    name : str
        A timm architecture name, e.g. ``"convnext_atto"`` or ``"resnet18"``.
    num_outputs : int
        Number of logits.
    in_channels : int
        Bands of the input image.
    image_size : int, optional
        Unused: timm CNNs take any size (kept for the registry's signature).
    weights : str or Path, optional
        Local file of pretrained weights for this architecture (safetensors
        or a PyTorch state dict; any number of classes).  Without it the
        network starts from random weights.
    drop_path_rate : float
        Stochastic-depth rate, for architectures that support it.
    dropout : float
        Dropout before the classifier.

    Returns
    -------
    torch.nn.Module
        Features (pooled, pre-logit) are timm's
        ``forward_head(forward_features(x), pre_logits=True)``.
    """
    # Imported here: timm takes a second to import, and a process that only runs another network never needs it.
    import timm

    if name not in timm.list_models():
        raise ConfigError(f"unknown architecture '{name}': not rotinv, hybrid, or a timm model name")
    options = {"num_classes": num_outputs, "in_chans": in_channels, "drop_rate": dropout}
    if drop_path_rate:
        options["drop_path_rate"] = drop_path_rate
    model = timm.create_model(name, pretrained=False, **options)
    if weights is not None:
        load_pretrained_file(model, name, weights, in_channels)
    return model


def load_pretrained_file(model: nn.Module, name: str, weights: str | Path, in_channels: int) -> None:
    """Load a local pretrained-weights file into a timm model, in place.

    Parameters
    ----------
    model : torch.nn.Module
        A model created by ``timm.create_model(name, ...)``.
    name : str
        Its architecture name (for messages).
    weights : str or Path
        The weights file.
    in_channels : int
        Bands the model expects.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise MissingFileError(weights, "pretrained weights file")
    from timm.models import adapt_input_conv, load_state_dict

    try:
        state = load_state_dict(str(weights))
    except Exception as error:  # safetensors and pickle raise unrelated types for a broken file
        raise CorruptFileError(weights, f"not a readable weights file ({type(error).__name__})") from error
    classifier = model.pretrained_cfg.get("classifier") or ""
    first_conv = model.pretrained_cfg.get("first_conv") or ""
    first_conv_weight = f"{first_conv}.weight"
    if in_channels != 3 and first_conv_weight in state:
        state[first_conv_weight] = adapt_input_conv(in_channels, state[first_conv_weight])
    own = model.state_dict()
    for key in [key for key in state if key.startswith(classifier) and key in own]:
        if state[key].shape != own[key].shape:
            del state[key]
    mismatched = [key for key in state if key in own and state[key].shape != own[key].shape]
    missing = [key for key in own if key not in state and not key.startswith(classifier)]
    unexpected = [key for key in state if key not in own]
    if mismatched or missing or unexpected:
        example = (mismatched or missing or unexpected)[0]
        raise CorruptFileError(
            weights,
            f"does not hold weights for {name} ({len(mismatched)} shape mismatches, {len(missing)} missing, "
            f"{len(unexpected)} unexpected tensors, e.g. '{example}')",
        )
    model.load_state_dict(state, strict=False)
