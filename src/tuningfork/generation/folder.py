"""Generator model folders, in the layout of :mod:`tuningfork.models.folder`.

``weights.safetensors`` holds the EMA weights; ``config.json`` is a
:class:`~tuningfork.models.ModelConfig` whose ``architecture`` is
``conditional-diffusion``, whose ``architecture_options`` are the UNet size
and whose ``target`` says what the generator makes: the condition space, the
affine map to model space (so samples can be returned in data units) and the
noise schedule.  Preprocessing, package versions, metrics and the weights'
checksum are stored as for every other model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, MissingFileError, ModelError
from ..models.folder import CONFIG_FILE, WEIGHTS_FILE, ModelConfig, _sha256, read_config, save_model
from ..preprocessing import PreprocessConfig
from .conditions import ConditionSpace
from .model import ConditionalUNet, UNetConfig
from .scaling import DiffusionScaling

ARCHITECTURE = "conditional-diffusion"
#: ``target.kind`` of a generator's config.
TARGET_KIND = "generation"


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
    """Write a generator's model folder (each file replaced atomically).

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
    unet = generator.model.config
    config = ModelConfig(
        architecture=ARCHITECTURE,
        num_outputs=unet.bands,
        in_channels=unet.bands,
        image_size=unet.image_size,
        preprocessing=generator.scaling.preprocess.to_dict(),
        target={
            "kind": TARGET_KIND,
            "conditions": generator.conditions.to_dict(),
            "scaling": generator.scaling.to_dict(),
            "noise_schedule": generator.schedule,
        },
        architecture_options=unet.to_dict(),
        metrics=generator.metrics,
    )
    return save_model(folder, generator.model, config)


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
        The folder does not exist.
    ModelError
        The folder lacks a model file or holds another kind of model.
    CorruptFileError
        ``config.json`` is unreadable, or the weights are unreadable or not
        the ones the config was written with.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model

    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(folder, "generator folder")
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: not a generator folder (no {name})")
    config, digest = read_config(folder)
    if config.architecture != ARCHITECTURE or config.target.get("kind") != TARGET_KIND:
        raise ModelError(
            f"{folder}: not a generator folder (architecture '{config.architecture}', not '{ARCHITECTURE}')"
        )
    weights = folder / WEIGHTS_FILE
    if digest is not None and _sha256(weights) != digest:
        raise CorruptFileError(weights, f"does not match {CONFIG_FILE} (changed or half-written)")
    try:
        model = ConditionalUNet(
            UNetConfig.from_dict(config.architecture_options), ConditionSpace.from_dict(config.target["conditions"])
        )
        scaling = DiffusionScaling.from_dict(config.target["scaling"], PreprocessConfig.from_dict(config.preprocessing))
        schedule = dict(config.target["noise_schedule"])
    except (KeyError, TypeError, ValueError) as error:
        raise CorruptFileError(folder / CONFIG_FILE, f"incomplete generator settings ({type(error).__name__}: {error})") from None
    try:
        load_model(model, str(weights), strict=True)
    except (SafetensorError, RuntimeError, OSError) as error:
        problem = str(error).splitlines()[0][:160]
        raise CorruptFileError(weights, f"cannot load into the generator of {CONFIG_FILE}: {problem}") from None
    return Generator(model=model.eval(), scaling=scaling, schedule=schedule, metrics=config.metrics, name=str(folder))
