"""Generators: a view of a generator model folder (:mod:`tuningfork.models.folder`).

``weights.safetensors`` holds the EMA weights; ``config.json`` is a
:class:`~tuningfork.models.ModelConfig` whose ``architecture`` is
``conditional-diffusion``, whose ``architecture_options`` are the UNet size
and whose ``target`` says what the generator makes: the condition space, the
affine map to model space (so samples can be returned in data units) and the
noise schedule.  Preprocessing, package versions, metrics and the weights'
checksum are stored as for every other model; :func:`tuningfork.models.load_model`
reads it, and :meth:`Generator.from_loaded` adds the sampling settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, MissingFileError, ModelError
from ..models import (
    ConditionalUNet,
    ConditionSpace,
    LoadedModel,
    ModelConfig,
    load_model,
    read_config,
)
from ..models.folder import CONFIG_FILE
from ..models.nets.unet import ARCHITECTURE
from .scaling import DiffusionScaling

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

    def model_config(self) -> ModelConfig:
        """The model-folder config, for :func:`tuningfork.models.save_model`.

        Returns
        -------
        ModelConfig
        """
        unet = self.model.config
        return ModelConfig(
            architecture=ARCHITECTURE,
            num_outputs=unet.bands,
            in_channels=unet.bands,
            image_size=unet.image_size,
            preprocessing=self.scaling.preprocess.to_dict(),
            target={
                "kind": TARGET_KIND,
                "conditions": self.conditions.to_dict(),
                "scaling": self.scaling.to_dict(),
                "noise_schedule": self.schedule,
            },
            architecture_options=unet.to_dict(),
            metrics=self.metrics,
        )

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> Generator:
        """The generator of a loaded generator model folder.

        Parameters
        ----------
        loaded : LoadedModel
            From :func:`tuningfork.models.load_model`.

        Returns
        -------
        Generator

        Raises
        ------
        ModelError
            For a folder holding another kind of model.
        CorruptFileError
            For incomplete generator settings.
        """
        config, folder = loaded.config, loaded.folder
        _check_kind(config, folder)
        try:
            scaling = DiffusionScaling.from_dict(config.target["scaling"], loaded.preprocess)
            schedule = dict(config.target["noise_schedule"])
        except (KeyError, TypeError, ValueError) as error:
            raise CorruptFileError(
                folder / CONFIG_FILE, f"incomplete generator settings ({type(error).__name__}: {error})"
            ) from None
        return cls(model=loaded.network, scaling=scaling, schedule=schedule, metrics=config.metrics, name=str(folder))


def load_generator(folder: str | Path) -> Generator:
    """Load a generator model folder (:func:`tuningfork.models.load_model`, then :meth:`Generator.from_loaded`).

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
        The folder, its config or its weights do not exist.
    ModelError
        The folder holds another kind of model.
    CorruptFileError
        ``config.json`` is unreadable, or the weights are unreadable or not
        the ones the config was written with.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(folder, "generator folder")
    if not (folder / CONFIG_FILE).is_file():
        raise ModelError(f"{folder}: not a generator folder (no {CONFIG_FILE})")
    # The kind is checked before the weights are read, so that another
    # model's folder gets this message rather than a weights error.
    _check_kind(read_config(folder)[0], folder)
    return Generator.from_loaded(load_model(folder))


def _check_kind(config: ModelConfig, folder: Path) -> None:
    if config.architecture != ARCHITECTURE or config.target.get("kind") != TARGET_KIND:
        raise ModelError(
            f"{folder}: not a generator folder (architecture '{config.architecture}', not '{ARCHITECTURE}')"
        )
