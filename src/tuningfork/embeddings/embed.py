"""One interface for every encoder, and embedding extraction over a collection.

An :class:`Encoder` turns a batch of preprocessed images into vectors and
carries the preprocessing it expects, so that extraction, search by a new
image and the web service all prepare pixels the same way.  Encoders exist
for the pretrained AstroPT model, for a timm backbone with weights from a
local file (never downloaded) and the denoising autoencoder (both from
:mod:`tuningfork.clustering.encoders`), and for supervised model folders.
"""

from __future__ import annotations

import json
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

        Parameters
        ----------
        image : ndarray
            Raw pixels; not modified.
        sed : ndarray, optional
            (len(sed_columns),) catalog values.  A new image usually has no
            catalog row, so by default every SED token is "missing".

        Returns
        -------
        ndarray
            float32 (dim,).
        """
        prepared = Preprocessor(self.preprocess)(image)
        if sed is None and self.sed_columns:
            sed = np.full(len(self.sed_columns), np.nan, dtype=np.float32)
        return self.encode(prepared[None], None if sed is None else np.atleast_2d(sed))[0]


class AstroPTEncoder(Encoder):
    """Embeddings of a (pre)trained :class:`AstroPT` (pooled as its config says).

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
        self.name, self.dim, self.preprocess = name, model.config.embedding_dim, preprocess
        self.sed_columns = list(model.config.sed_columns)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()

    @classmethod
    def from_folder(cls, folder: str | Path, device: str = "auto") -> AstroPTEncoder:
        """Load the encoder of a model folder written by ``tuningfork pretrain``."""
        model, preprocess, _ = load_astropt(folder)
        return cls(model, preprocess, name=f"astropt:{Path(folder).resolve()}", device=device)

    def encode(self, images: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        batch = torch.as_tensor(np.asarray(images, dtype=np.float32), device=self.device)
        with torch.inference_mode():
            sed_tensor = None
            if sed is not None:
                raw = torch.as_tensor(np.asarray(sed, dtype=np.float32), device=self.device)
                sed_tensor = self.model.standardise_sed(raw)
            return self.model.embed(batch, sed_tensor).float().cpu().numpy()


class FeatureEncoder(Encoder):
    """Any image-only feature extractor of :mod:`tuningfork.clustering.encoders`.

    Gives a timm backbone or the denoising autoencoder the preprocessing
    this interface carries, so they embed collections like AstroPT does.

    Parameters
    ----------
    features : object
        Has ``name``, ``dim`` and ``encode(images) -> (n, dim)``.
    preprocess : PreprocessConfig
        Preprocessing the extractor expects.
    """

    def __init__(self, features, preprocess: PreprocessConfig):
        self.features = features
        self.name, self.dim, self.preprocess = features.name, int(features.dim), preprocess

    def encode(self, images: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        return np.asarray(self.features.encode(images), dtype=np.float32)


class SupervisedEncoder(Encoder):
    """Penultimate-layer features of a supervised tuningfork model (``tuningfork train``).

    The last linear layer (the classifier) is replaced by the identity, so
    the encoder returns what the classifier reads.

    Parameters
    ----------
    loaded : tuningfork.models.LoadedModel
        From :func:`tuningfork.models.load_model`; its network is modified.
    device : str
        ``auto``, ``cpu``, ``cuda``...
    """

    def __init__(self, loaded, device: str = "auto"):
        network = loaded.network
        linear = [
            name for name, module in network.named_modules() if isinstance(module, torch.nn.Linear)
        ]
        if not linear:
            raise ModelError(
                f"{loaded.folder}: the {loaded.config.architecture} network "
                "has no linear classifier"
            )
        self.dim = network.get_submodule(linear[-1]).in_features
        network.set_submodule(linear[-1], torch.nn.Identity())
        self.name = f"supervised:{Path(loaded.folder).resolve()}"
        self.preprocess = PreprocessConfig.from_dict(loaded.config.preprocessing)
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval()

    def encode(self, images: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        batch = torch.as_tensor(np.asarray(images, dtype=np.float32), device=self.device)
        with torch.inference_mode():
            return self.network(batch).float().cpu().numpy()


def load_encoder(
    source: str | Path,
    weights: str | Path | None = None,
    bands: int = 3,
    image_size: int | None = None,
    device: str = "auto",
) -> Encoder:
    """Open an encoder from a model folder or a timm architecture name.

    Parameters
    ----------
    source : str or Path
        A model folder (``config.json`` + ``weights.safetensors``) written by
        ``tuningfork pretrain``, by supervised training (penultimate
        features) or by the denoising autoencoder's training, or
        ``timm:<architecture>`` (then ``weights`` is required).
    weights : str or Path, optional
        Local weights of a timm backbone; nothing is ever downloaded.
    bands : int
        Image bands of a timm backbone.
    image_size : int, optional
        Input side in pixels of a timm backbone (default 224, as ImageNet).
    device : str
        ``auto``, ``cpu``, ``cuda`` (AstroPT models).

    Returns
    -------
    Encoder
    """
    from ..clustering import autoencoder, encoders

    text = str(source)
    if text.startswith(TIMM_PREFIX):
        if weights is None:
            raise ConfigError(
                f"encoder '{text}' needs a local weights file (--weights); nothing is downloaded"
            )
        size = image_size or 224
        backbone = encoders.TimmEncoder(
            text[len(TIMM_PREFIX) :], weights, in_chans=bands, input_size=size
        )
        return FeatureEncoder(backbone, PreprocessConfig(output_size=size, normalisation="minmax"))
    folder = Path(source)
    if not folder.is_dir():
        raise MissingFileError(folder, "model folder")
    config_path = folder / "config.json"
    if not config_path.is_file():
        raise MissingFileError(config_path, "model config")
    architecture = json.loads(config_path.read_text()).get("architecture")
    if architecture == ARCHITECTURE:
        return AstroPTEncoder.from_folder(folder, device=device)
    if architecture == autoencoder.ARCHITECTURE:
        features = encoders.AutoencoderEncoder(folder)
        stored = features.preprocess
        return FeatureEncoder(
            features, PreprocessConfig.from_dict(stored) if stored else PreprocessConfig()
        )
    from ..models import load_model

    return SupervisedEncoder(load_model(folder), device=device)


def embed_query_image(
    embeddings: EmbeddingSet,
    image_path: str | Path,
    encoder_source: str | Path,
    weights: str | Path | None = None,
    device: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Embed a new image file exactly as a set of stored embeddings was made.

    The preprocessing stored with the embeddings is applied, so a query is
    prepared like the galaxies it is compared with.

    Parameters
    ----------
    embeddings : EmbeddingSet
        The embeddings to search (their metadata name the encoder).
    image_path : str or Path
        The query image (FITS, PNG/JPEG, NPY...).
    encoder_source : str or Path
        The encoder that made the embeddings (see :func:`load_encoder`).
    weights : str or Path, optional
        Local weights of a timm backbone.
    device : str
        ``auto``, ``cpu``, ``cuda``...

    Returns
    -------
    image : ndarray
        The raw query image (bands, H, W).
    vector : ndarray
        Its embedding (dim,).
    """
    from ..data import read_image

    image = read_image(image_path)
    stored = embeddings.metadata.get("preprocessing")
    preprocess = PreprocessConfig.from_dict(stored) if stored else None
    size = preprocess.output_size if preprocess else None
    encoder = load_encoder(
        encoder_source, weights, bands=image.shape[0], image_size=size, device=device
    )
    made_by = embeddings.metadata.get("encoder")
    if made_by is not None and made_by != encoder.name:
        raise ModelError(
            f"{embeddings.path}: embeddings were made by encoder '{made_by}', not '{encoder.name}'"
        )
    if preprocess is not None:
        encoder.preprocess = preprocess
    return image, encoder.encode_raw(image)


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
