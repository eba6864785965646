"""One interface for every encoder, and embedding extraction over a collection.

An :class:`Encoder` turns a batch of preprocessed images into vectors and
carries the preprocessing it expects, so that extraction, search by a new
image and the web service all prepare pixels the same way.  Encoders exist
for the pretrained AstroPT model, for a timm backbone with weights from a
local file (never downloaded), and for other tuningfork model folders.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from ..data import GalaxyCollection
from ..errors import ConfigError, MissingFileError, ModelError, UnsupportedFormatError
from ..preprocessing import PreprocessConfig, Preprocessor
from .astropt import ARCHITECTURE, AstroPT, load_astropt
from .pretrain import sed_values
from .store import EmbeddingSet, EmbeddingWriter, load_embeddings

TIMM_PREFIX = "timm:"


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` is the first GPU when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


class Encoder(ABC):
    """Maps preprocessed images (and optional SED values) to embedding vectors.

    Attributes
    ----------
    name : str
        Short description stored with the embeddings.
    dim : int
        Length of an embedding.
    preprocess : PreprocessConfig
        What to apply to raw images before :meth:`encode`.
    sed_columns : sequence of str
        Catalog columns the encoder reads besides pixels (empty for most).
    """

    name: str
    dim: int
    preprocess: PreprocessConfig
    sed_columns: Sequence[str] = ()

    @abstractmethod
    def encode(self, images: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        """Embed a batch.

        Parameters
        ----------
        images : ndarray
            float32 (batch, bands, H, W), already preprocessed with
            :attr:`preprocess`.
        sed : ndarray, optional
            (batch, len(sed_columns)) raw catalog values; NaN = missing.

        Returns
        -------
        ndarray
            float32 (batch, dim).
        """

    def describe(self) -> dict:
        """What made the embeddings, stored in their Parquet metadata."""
        return {
            "encoder": self.name,
            "dim": self.dim,
            "preprocessing": self.preprocess.to_dict(),
            "sed_columns": list(self.sed_columns),
        }

    def encode_raw(self, image: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        """Preprocess and embed one raw (bands, H, W) image, e.g. a new query file.

        Returns
        -------
        ndarray
            float32 (dim,).
        """
        prepared = Preprocessor(self.preprocess)(image)
        return self.encode(prepared[None], None if sed is None else np.atleast_2d(sed))[0]


class TorchEncoder(Encoder):
    """An encoder backed by a torch function of a batch tensor.

    Parameters
    ----------
    name : str
        Description.
    module : torch.nn.Module
        Holds the weights (moved to ``device`` and set to evaluation mode).
    dim : int
        Embedding length.
    preprocess : PreprocessConfig
        Preprocessing the module expects.
    device : str
        ``auto``, ``cpu``, ``cuda``...
    """

    def __init__(
        self,
        name: str,
        module: torch.nn.Module,
        dim: int,
        preprocess: PreprocessConfig,
        device: str = "auto",
    ):
        self.name, self.dim, self.preprocess = name, int(dim), preprocess
        self.device = resolve_device(device)
        self.module = module.to(self.device).eval()

    def _features(self, images: torch.Tensor, sed: torch.Tensor | None) -> torch.Tensor:
        return self.module(images)

    def encode(self, images: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        batch = torch.as_tensor(np.asarray(images, dtype=np.float32), device=self.device)
        sed_tensor = (
            None
            if sed is None
            else torch.as_tensor(np.asarray(sed, dtype=np.float32), device=self.device)
        )
        with torch.inference_mode():
            features = self._features(batch, sed_tensor)
        return features.float().cpu().numpy().reshape(len(batch), -1)


class AstroPTEncoder(TorchEncoder):
    """Embeddings of a (pre)trained :class:`AstroPT`: mean of its final hidden states.

    Parameters
    ----------
    model : AstroPT
        The model (trained, or freshly initialised as a baseline).
    preprocess : PreprocessConfig
        Its preprocessing; ``output_size`` must equal the model's image size.
    name : str
        Description.
    device : str
        ``auto``, ``cpu``, ``cuda``...
    """

    def __init__(
        self,
        model: AstroPT,
        preprocess: PreprocessConfig,
        name: str = "astropt",
        device: str = "auto",
    ):
        if preprocess.output_size != model.config.image_size:
            raise ModelError(
                f"{name}: preprocessing output_size {preprocess.output_size} px differs from the "
                f"model's image size {model.config.image_size} px"
            )
        super().__init__(name, model, model.config.embed_dim, preprocess, device)
        self.sed_columns = list(model.config.sed_columns)

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "auto") -> AstroPTEncoder:
        """Load the encoder of a model folder written by ``tuningfork pretrain``."""
        model, preprocess, _ = load_astropt(folder)
        return cls(model, preprocess, name=f"astropt:{Path(folder).resolve()}", device=device)

    def _features(self, images: torch.Tensor, sed: torch.Tensor | None) -> torch.Tensor:
        if sed is not None:
            sed = self.module.standardise_sed(sed)
        return self.module.embed(images, sed)


class TimmEncoder(TorchEncoder):
    """A timm backbone (classifier removed) with weights from a local file.

    Parameters
    ----------
    architecture : str
        A timm model name, e.g. ``resnet18`` or ``convnext_nano``.
    weights : str or Path
        Local ``.safetensors``, ``.pth`` or ``.bin`` state dict of that
        architecture.  Nothing is ever downloaded.
    bands : int
        Image bands; timm adapts the first convolution when it is not 3.
    preprocess : PreprocessConfig, optional
        Default: min-max to [0, 1] at the backbone's pretraining resolution;
        the backbone's own mean/std normalisation is applied on top.
    device : str
        ``auto``, ``cpu``, ``cuda``...
    """

    def __init__(
        self,
        architecture: str,
        weights: str | Path,
        bands: int = 3,
        preprocess: PreprocessConfig | None = None,
        device: str = "auto",
    ):
        import timm

        weights = Path(weights)
        if not weights.is_file():
            raise MissingFileError(weights, f"weights file of timm model '{architecture}'")
        if architecture not in timm.list_models():
            raise ConfigError(f"'{architecture}' is not a timm architecture")
        try:
            # source="file" keeps timm from looking the weights up on the Hugging Face hub.
            module = timm.create_model(
                architecture,
                pretrained=True,
                num_classes=0,
                in_chans=bands,
                pretrained_cfg_overlay={"file": str(weights), "source": "file"},
            )
        except (RuntimeError, KeyError, ValueError, OSError) as error:
            raise ModelError(
                f"{weights}: not usable weights for timm '{architecture}' ({error})"
            ) from error
        data_config = timm.data.resolve_data_config(model=module)
        preprocess = preprocess or PreprocessConfig(
            output_size=int(data_config["input_size"][-1]), normalisation="minmax"
        )
        super().__init__(
            f"timm:{architecture}:{weights.resolve()}",
            module,
            module.num_features,
            preprocess,
            device,
        )
        mean, std = np.asarray(data_config["mean"]), np.asarray(data_config["std"])
        if len(mean) != bands:
            mean, std = np.full(bands, mean.mean()), np.full(bands, std.mean())
        self._mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)
        self._std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, -1, 1, 1)

    def _features(self, images: torch.Tensor, sed: torch.Tensor | None) -> torch.Tensor:
        return self.module((images - self._mean) / self._std)


def load_encoder(
    source: str | Path, weights: str | Path | None = None, bands: int = 3, device: str = "auto"
) -> Encoder:
    """Open an encoder from a model folder or a timm architecture name.

    Parameters
    ----------
    source : str or Path
        A model folder (``config.json`` + ``weights.safetensors``) written by
        ``tuningfork pretrain`` or by another tuningfork trainer, or
        ``timm:<architecture>`` (then ``weights`` is required).
    weights : str or Path, optional
        Local weights of a timm backbone.
    bands : int
        Image bands of a timm backbone.
    device : str
        ``auto``, ``cpu``, ``cuda``...

    Returns
    -------
    Encoder
    """
    text = str(source)
    if text.startswith(TIMM_PREFIX):
        if weights is None:
            raise ConfigError(
                f"encoder '{text}' needs a local weights file (--weights); nothing is downloaded"
            )
        return TimmEncoder(text[len(TIMM_PREFIX) :], weights, bands=bands, device=device)
    folder = Path(source)
    config_path = folder / "config.json"
    if not folder.is_dir():
        raise MissingFileError(folder, "model folder")
    if not config_path.is_file():
        raise MissingFileError(config_path, "model config")
    import json

    architecture = json.loads(config_path.read_text()).get("architecture")
    if architecture == ARCHITECTURE:
        return AstroPTEncoder.from_folder(folder, device=device)
    return _model_folder_encoder(folder, architecture, device)


def _model_folder_encoder(folder: Path, architecture: str | None, device: str) -> Encoder:
    raise ModelError(f"{folder}: no encoder for architecture '{architecture}'")


def extract_embeddings(
    collection: GalaxyCollection,
    encoder: Encoder,
    out_path: str | Path,
    batch_size: int = 64,
    progress: bool = False,
) -> EmbeddingSet:
    """Embed every galaxy of a collection and write the result.

    Images are read, preprocessed and embedded one batch at a time, and the
    vectors go straight to disk, so memory stays bounded by one batch of
    images whatever the size of the collection.

    Parameters
    ----------
    collection : GalaxyCollection
        The galaxies; SED columns the encoder needs are read from its catalog.
    encoder : Encoder
        See :func:`load_encoder`.
    out_path : str or Path
        Output ``.parquet`` (ids + vectors); a float32 ``.npy`` of the vectors
        is written beside it.  Both replace earlier files only on success.
    batch_size : int
        Galaxies per batch.
    progress : bool
        Show a progress bar.

    Returns
    -------
    EmbeddingSet
        The written embeddings (vectors memory-mapped from the NPY).
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".parquet":
        raise UnsupportedFormatError(out_path, "embeddings output must end in .parquet")
    if len(collection) == 0:
        raise ConfigError(f"{collection.name}: no galaxies to embed")
    sed = sed_values(collection, encoder.sed_columns) if encoder.sed_columns else None
    preprocessor = Preprocessor(encoder.preprocess)
    metadata = {**encoder.describe(), "source": collection.name}
    with EmbeddingWriter(out_path, len(collection), encoder.dim, metadata) as writer:
        start = 0
        for batch in collection.iter_batches(
            batch_size, preprocess=preprocessor, progress=progress
        ):
            batch_sed = None if sed is None else sed[start : start + len(batch)]
            writer.write(batch.ids, encoder.encode(np.asarray(batch.images), batch_sed))
            start += len(batch)
    return load_embeddings(out_path)


def embed_arrays(
    encoder: Encoder, images: Sequence[np.ndarray] | np.ndarray, batch_size: int = 64
) -> np.ndarray:
    """Embed raw in-memory images (preprocessing included), without writing anything.

    Parameters
    ----------
    encoder : Encoder
        The encoder.
    images : ndarray or sequence of ndarray
        Raw (bands, H, W) images.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    ndarray
        float32 (n, dim).
    """
    collection = GalaxyCollection.from_arrays(images)
    preprocessor = Preprocessor(encoder.preprocess)
    parts = [
        encoder.encode(np.asarray(batch.images))
        for batch in collection.iter_batches(batch_size, preprocessor)
    ]
    return np.concatenate(parts).astype(np.float32)
