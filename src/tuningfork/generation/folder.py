"""Generator model folders: ``weights.safetensors`` (EMA weights) and ``config.json``.

Same layout as every tuningfork model folder.  ``config.json`` holds the
architecture name, the UNet size, the condition space, the preprocessing and
the affine map to model space (so samples can be returned in data units), the
noise schedule, package versions and the training metrics.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.writers import atomic_path
from ..errors import CorruptFileError, MissingFileError, ModelError
from ..preprocessing import PreprocessConfig
from .conditions import ConditionSpace
from .model import ConditionalUNet, UNetConfig
from .scaling import DiffusionScaling

ARCHITECTURE = "conditional-diffusion"
WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"


@dataclass
class Generator:
    """A trained generator and everything needed to sample from it.

    Parameters
    ----------
    model : ConditionalUNet
        The network, holding the EMA weights.
    scaling : DiffusionScaling
        Preprocessing and map to model space, with its inverse.
    schedule : dict
        diffusers DDPMScheduler config of the training noise schedule.
    metrics : dict
        Training record (loss per epoch, data set, settings).
    name : str
        Where the generator came from (its folder), for messages.
    """

    model: ConditionalUNet
    scaling: DiffusionScaling
    schedule: dict[str, Any]
    metrics: dict[str, Any] = field(default_factory=dict)
    name: str = "generator"

    @property
    def conditions(self) -> ConditionSpace:
        """The condition space of the model."""
        return self.model.conditions


def save_generator(generator: Generator, folder: str | Path) -> Path:
    """Write a generator's model folder (files replaced atomically).

    Parameters
    ----------
    generator : Generator
        The trained generator.
    folder : str or Path
        Created if needed.

    Returns
    -------
    Path
        The folder.
    """
    from safetensors.torch import save_file

    from ..embeddings.astropt import package_versions

    folder = Path(folder)
    config = {
        "architecture": ARCHITECTURE,
        "model": generator.model.config.to_dict(),
        "conditions": generator.conditions.to_dict(),
        "preprocessing": generator.scaling.preprocess.to_dict(),
        "scaling": generator.scaling.to_dict(),
        "schedule": generator.schedule,
        "versions": package_versions(),
        "metrics": generator.metrics,
    }
    state = {key: value.detach().cpu().contiguous() for key, value in generator.model.state_dict().items()}
    with atomic_path(folder / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    with atomic_path(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(config, indent=2))
    return folder


def load_generator(folder: str | Path) -> Generator:
    """Load a generator model folder written by :func:`save_generator`.

    Parameters
    ----------
    folder : str or Path
        The model folder.

    Returns
    -------
    Generator
        Network in evaluation mode, on the CPU.

    Raises
    ------
    MissingFileError
        The folder or one of its two files does not exist.
    CorruptFileError
        ``config.json`` is not JSON or the weights cannot be read.
    ModelError
        The folder holds another kind of model, or weights that do not fit.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(folder, "generator folder")
    config_path, weights_path = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    for path in (config_path, weights_path):
        if not path.is_file():
            raise ModelError(f"{folder}: not a generator folder (no {path.name})")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as error:
        raise CorruptFileError(config_path, f"not valid JSON ({error.msg}, line {error.lineno})") from None
    if not isinstance(config, dict) or config.get("architecture") != ARCHITECTURE:
        found = config.get("architecture") if isinstance(config, dict) else None
        raise ModelError(f"{folder}: not a generator folder (architecture '{found}', not '{ARCHITECTURE}')")
    preprocess = PreprocessConfig.from_dict(config["preprocessing"])
    model = ConditionalUNet(
        UNetConfig.from_dict(config["model"]), ConditionSpace.from_dict(config["conditions"])
    )
    try:
        state = load_file(str(weights_path))
    except SafetensorError as error:
        raise CorruptFileError(weights_path, f"unreadable safetensors file ({error})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError:
        raise ModelError(f"{weights_path}: weights do not match the architecture in {CONFIG_FILE}") from None
    return Generator(
        model=model.eval(),
        scaling=DiffusionScaling.from_dict(config["scaling"], preprocess),
        schedule=config["schedule"],
        metrics=config.get("metrics", {}),
        name=str(folder),
    )
