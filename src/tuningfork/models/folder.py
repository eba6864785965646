"""Model folders: everything ``predict`` needs, in two files.

A model folder holds

* ``weights.safetensors``: the network's tensors (safetensors: no pickled
  code runs when a folder is opened);
* ``config.json``: the architecture and its options, the preprocessing
  config, the target (class names, or the Galaxy Zoo tree and loss), the
  fitted temperature and the validation confidences that triage thresholds
  are chosen from, training metrics, and the versions of the packages that
  wrote it.

A classifier's folder also holds ``network.onnx`` (written by ``train``;
:mod:`.export`), the same network for ONNX Runtime, which runs it without
torch; it is optional, and a folder without it loads and predicts as before.

Each file is written atomically, config last; the config records the
SHA-256 of the weights it belongs to, so a folder whose save was interrupted
half-way is detected on loading instead of silently mixing two models.

Every kind of model (classifier, vote model, AstroPT, denoising
autoencoder, generator) uses this one layout: :func:`save_model` writes it,
:func:`load_model` reads it back as one :class:`LoadedModel`, rebuilding the
network through the registry (:func:`tuningfork.models.create_model`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import Serialisable
from ..data.writers import atomic_path
from ..errors import ConfigError, CorruptFileError, MissingFileError, ModelError
from ..preprocessing import PreprocessConfig
from .registry import create_model, needs_target
from .shipped import file_sha256, resolve_model_folder, shipped_models

if TYPE_CHECKING:
    from torch import nn

WEIGHTS_FILE = "weights.safetensors"
CONFIG_FILE = "config.json"
FORMAT_VERSION = 1
_RECORDED_PACKAGES = ("tuningfork", "torch", "timm", "lightning", "numpy", "safetensors")


@dataclass
class ModelConfig(Serialisable):
    """What a model folder's ``config.json`` says.

    Parameters
    ----------
    architecture : str
        A registered architecture (:func:`tuningfork.models.list_models`)
        or a timm model name.
    num_outputs : int
        Number of network outputs (classes, or answers of the tree).
    in_channels : int
        Bands the network expects.
    image_size : int
        Side of the square input, in pixels.
    preprocessing : dict
        :meth:`tuningfork.preprocessing.PreprocessConfig.to_dict` of the
        preprocessing applied in training.
    target : dict
        ``{"kind": "classes", "column": ..., "class_names": [...]}`` or
        ``{"kind": "votes", "tree": ..., "loss": "dirichlet" | "mse"}``.
    architecture_options : dict
        Keyword arguments the network was built with.
    temperature : float
        Logit temperature fitted on the validation split (1 for vote models).
    validation : dict
        ``confidence`` and ``correct`` lists of the validation galaxies
        (calibrated), from which triage thresholds are chosen.
    metrics : dict
        Training and validation metrics.
    versions : dict
        Package versions, filled in by :func:`save_model`.
    format_version : int
        Version of this layout.
    """

    architecture: str
    num_outputs: int
    in_channels: int
    image_size: int
    preprocessing: dict
    target: dict
    architecture_options: dict = field(default_factory=dict)
    temperature: float = 1.0
    validation: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    @property
    def is_votes(self) -> bool:
        """True for a Galaxy Zoo vote-fraction model."""
        return self.target.get("kind") == "votes"

    @property
    def class_names(self) -> list[str]:
        """Class names of a classifier (empty for vote models)."""
        return list(self.target.get("class_names", []))


@dataclass
class StoredModel:
    """A checked model folder without its network: what preprocessing, triage and the tables need.

    Opening one reads no weights into a network, so it needs no torch: the
    catalog's client and the ONNX Runtime path of ``predict`` use it.

    Attributes
    ----------
    config : ModelConfig
    folder : Path
    weights_sha256 : str
        Checksum of the weights (computed on opening for folders of early
        releases, whose config does not record it).
    """

    config: ModelConfig
    folder: Path
    weights_sha256: str = ""

    @property
    def preprocess(self) -> PreprocessConfig:
        """The preprocessing the network was trained with."""
        return PreprocessConfig.from_dict(self.config.preprocessing)


@dataclass
class LoadedModel(StoredModel):
    """A network ready for inference, with its config.

    Attributes
    ----------
    network : torch.nn.Module
        In evaluation mode, on the CPU.
    """

    network: nn.Module | None = None


def package_versions(packages: tuple[str, ...] = _RECORDED_PACKAGES) -> dict[str, str]:
    """Installed versions of ``packages``, as recorded beside every result.

    Parameters
    ----------
    packages : tuple of str
        Distribution names; by default those a model folder records.

    Returns
    -------
    dict
        Name to version, or ``"not installed"``.
    """
    versions = {}
    for package in packages:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = "not installed"
    return versions


def save_model(folder: str | Path, network: nn.Module, config: ModelConfig) -> Path:
    """Write a model folder (weights, then config), each file atomically.

    Parameters
    ----------
    folder : str or Path
        Created if needed; other files in it are left alone.
    network : torch.nn.Module
        The trained network.
    config : ModelConfig
        Its description; ``versions`` is filled in here.

    Returns
    -------
    Path
        The folder.
    """
    from safetensors.torch import save_model as save_safetensors

    folder = Path(folder)
    weights = folder / WEIGHTS_FILE
    with atomic_path(weights) as tmp:
        # save_model (unlike save_file) copes with tensors shared between
        # modules, which some timm models have.
        save_safetensors(network, str(tmp))
        digest = file_sha256(tmp)
    config.versions = package_versions()
    document = config.to_dict() | {"weights_sha256": digest}
    with atomic_path(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps(document, indent=2))
    return folder


def read_config(folder: str | Path) -> tuple[ModelConfig, str | None]:
    """Read and check a model folder's ``config.json``.

    Parameters
    ----------
    folder : str or Path
        The model folder.

    Returns
    -------
    config : ModelConfig
    weights_sha256 : str or None
        Checksum of the weights the config was written with.
    """
    folder = resolve_model_folder(folder)
    if not folder.is_dir():
        names = ", ".join(shipped_models())
        # A bare name may have meant a shipped model: say which there are.
        bare = names and folder.name == str(folder)
        raise MissingFileError(folder, f"shipped model (one of {names}) or model folder" if bare else "model folder")
    path = folder / CONFIG_FILE
    if not path.is_file():
        raise MissingFileError(path, "model config")
    try:
        document = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise CorruptFileError(path, f"not valid JSON ({error.__class__.__name__})") from error
    if not isinstance(document, dict):
        raise CorruptFileError(path, "not a JSON object")
    digest = document.pop("weights_sha256", None)
    required = {item.name for item in dataclasses.fields(ModelConfig) if item.default is dataclasses.MISSING
                and item.default_factory is dataclasses.MISSING}
    absent = sorted(required - set(document))
    if absent:
        raise CorruptFileError(path, f"missing keys {', '.join(absent)}")
    version = document.get("format_version", FORMAT_VERSION)
    if version > FORMAT_VERSION:
        raise ModelError(f"{path}: written by a newer tuningfork (format {version}); upgrade to read it")
    try:
        return ModelConfig.from_dict(document), digest
    except ConfigError as error:
        raise CorruptFileError(path, str(error)) from None


def open_model(folder: str | Path, *, architecture: str | None = None) -> StoredModel:
    """Read and check a model folder (config, and that its weights are the config's), without building the network.

    Parameters
    ----------
    folder : str or Path
        A folder written by :func:`save_model`, or a shipped model's name.
    architecture : str, optional
        Refuse a folder holding another architecture.

    Returns
    -------
    StoredModel

    Raises
    ------
    MissingFileError, CorruptFileError, ModelError
        As :func:`load_model`, except that weights which do not fit the
        network are found only when it is built.
    """
    folder = resolve_model_folder(folder)
    config, digest = read_config(folder)
    if architecture is not None and config.architecture != architecture:
        article = "an" if architecture[:1] in "aeiou" else "a"
        raise ModelError(f"{folder}: holds a '{config.architecture}' model, not {article} {architecture} model")
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise MissingFileError(weights, "model weights")
    actual = file_sha256(weights)
    if digest is not None and actual != digest:
        raise CorruptFileError(weights, "does not match config.json (changed or half-written); retrain or restore both")
    return StoredModel(config=config, folder=folder, weights_sha256=actual)


def load_model(folder: str | Path | StoredModel, *, architecture: str | None = None) -> LoadedModel:
    """Read a model folder of any kind and rebuild its network, ready for inference.

    Parameters
    ----------
    folder : str, Path or StoredModel
        A folder written by :func:`save_model` (by this or an earlier
        release), or one already opened by :func:`open_model` (not checked
        again; a :class:`LoadedModel` is returned as it is).
    architecture : str, optional
        Refuse a folder holding another architecture (e.g.
        ``"denoising_autoencoder"`` where a denoiser is needed).

    Returns
    -------
    LoadedModel

    Raises
    ------
    MissingFileError
        For a missing folder, config or weights file.
    CorruptFileError
        For an unreadable config, or weights that are unreadable, do not fit
        the network, or are not the ones the config was written with.
    ModelError
        For a folder of another architecture than ``architecture``, or
        written by a newer tuningfork.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_model as load_safetensors

    if isinstance(folder, LoadedModel):
        return folder
    stored = folder if isinstance(folder, StoredModel) else open_model(folder, architecture=architecture)
    config, folder, weights = stored.config, stored.folder, stored.folder / WEIGHTS_FILE
    settings = {"in_channels": config.in_channels, "image_size": config.image_size, **config.architecture_options}
    if needs_target(config.architecture):
        settings["target"] = config.target
    try:
        network = create_model(config.architecture, config.num_outputs, **settings)
    except (KeyError, TypeError) as error:
        raise CorruptFileError(folder / CONFIG_FILE, f"incomplete {config.architecture} settings ({error})") from None
    try:
        load_safetensors(network, str(weights), strict=True)
    except (SafetensorError, RuntimeError, OSError) as error:
        problem = str(error).splitlines()[0][:160]
        raise CorruptFileError(weights, f"cannot load into {config.architecture}: {problem}") from error
    network.eval()
    return LoadedModel(config=config, folder=folder, weights_sha256=stored.weights_sha256, network=network)


def copy_matching_weights(network: nn.Module, folder: str | Path) -> list[str]:
    """Start ``network`` from a trained model folder's weights (fine-tuning).

    Every tensor of the folder's network whose name and shape match one of
    ``network`` is copied; the rest (typically the output layer, when the
    new task has other classes) keeps its fresh initialisation.  This is how
    a model trained on one labelled sample is adapted to another, as Zoobot
    adapts its Galaxy Zoo models.

    Parameters
    ----------
    network : torch.nn.Module
        Network to initialise, in place.
    folder : str or Path
        Model folder written by :func:`save_model`, of the same architecture.

    Returns
    -------
    list of str
        Names of the tensors that kept their fresh values.

    Raises
    ------
    ModelError
        If the folder's architecture differs, or fewer than half of the
        network's tensors match (other image size or options: not the same
        network with a new head).
    """
    source = load_model(folder)
    if type(source.network) is not type(network):
        raise ModelError(f"{folder}: a {source.config.architecture} model cannot initialise a {type(network).__name__}")
    source_state = source.network.state_dict()
    target_state = network.state_dict()
    matching = {name: tensor for name, tensor in source_state.items()
                if name in target_state and target_state[name].shape == tensor.shape}
    # Scalar buffers (batch-norm step counters) match any network: count tensors.
    shaped = [name for name, tensor in target_state.items() if tensor.ndim > 0]
    matched = sum(name in matching for name in shaped)
    if matched < len(shaped) / 2:
        raise ModelError(f"{folder}: only {matched} of the new network's {len(shaped)} weight tensors match "
                         "this model's (other image size or options?)")
    network.load_state_dict(matching, strict=False)
    return sorted(set(target_state) - set(matching))
