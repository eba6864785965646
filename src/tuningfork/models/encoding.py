"""Every encoder of the :class:`~tuningfork.models.encoder.Encoder` contract, and one loader.

:func:`load_encoder` opens any of them from one spec:

* ``"morphology"``: the rotation-invariant morphology descriptors
  (:class:`~tuningfork.models.nets.descriptors.MorphologyEncoder`), a network
  without weights;
* ``"timm:NAME"``: a timm backbone with weights from a local file (nothing
  is ever downloaded), its pooled pre-logit features (:class:`TimmEncoder`);
* a model folder: a supervised classifier or vote model (its pre-logit
  features, :class:`SupervisedEncoder`), an AstroPT model
  (:class:`AstroPTEncoder`) or a denoising autoencoder (its pooled
  bottleneck, :class:`AutoencoderEncoder`).

Supervised networks expose their features the way timm does:
``forward_head(forward_features(x), pre_logits=True)``; no layer is removed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..errors import ConfigError, MissingFileError, ModelError
from ..preprocessing import PreprocessConfig
from .encoder import Encoder, forward_in_batches, resolve_device
from .folder import LoadedModel, load_model
from .nets.astropt import ARCHITECTURE as ASTROPT
from .nets.astropt import AstroPT
from .nets.autoencoder import ARCHITECTURE as AUTOENCODER
from .nets.descriptors import MORPHOLOGY_ENCODER
from .nets.timm_backbone import timm_backbone
from .nets.unet import ARCHITECTURE as GENERATOR
from .registry import TIMM, create_model, parse_model_name

#: Input side of a timm encoder when none is given (ImageNet weights).
TIMM_INPUT_SIZE = 224


class TimmEncoder(Encoder):
    """A timm backbone whose pooled pre-logit features describe each galaxy.

    Parameters
    ----------
    model_name : str
        timm architecture, e.g. ``convnext_large`` (the paper) or
        ``convnext_tiny``.
    weights : str or Path, optional
        Local ``.safetensors`` or torch checkpoint of the backbone (a
        classification head in it is dropped).  None leaves the weights
        random, which is only meaningful for tests and ablations;
        :func:`load_encoder` always asks for a file.
    in_chans : int
        Bands of the images; weights for 3 bands are adapted to others.
    input_size : int
        Images are resized to this many pixels (224 for ImageNet weights).
    batch_size : int
        Images per forward pass.
    device : str, optional
        Torch device; CUDA when available by default.

    Raises
    ------
    ConfigError
        For an architecture timm does not know.
    MissingFileError, CorruptFileError
        For a weights file that is absent, unreadable or for another network.
    """

    def __init__(
        self,
        model_name: str = "convnext_tiny",
        weights: str | Path | None = None,
        *,
        in_chans: int = 3,
        input_size: int = TIMM_INPUT_SIZE,
        batch_size: int = 32,
        device: str | None = None,
    ):
        self.name = model_name
        self.in_chans = in_chans
        self.input_size = input_size
        self.batch_size = batch_size
        # ImageNet-like inputs: min-max normalised pixels at the input size.
        self.preprocess = PreprocessConfig(output_size=input_size, normalisation="minmax")
        self.device = resolve_device(device)
        # A one-logit head is built only so the weights loader can drop the
        # file's classifier; then, as timm's num_classes=0, the output is
        # the pooled pre-logit features.
        self.model = timm_backbone(model_name, 1, in_channels=in_chans, weights=weights)
        self.model.reset_classifier(0)
        self.model.eval().to(self.device)
        config = self.model.pretrained_cfg
        mean = np.asarray(config.get("mean", (0.5,) * 3))
        std = np.asarray(config.get("std", (0.5,) * 3))
        if in_chans != mean.size:
            # Bands other than RGB get the average ImageNet statistics.
            mean, std = np.full(in_chans, mean.mean()), np.full(in_chans, std.mean())
        self._mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self._std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).to(self.device)
        self.dim = int(self.model.num_features)

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        side = (self.input_size, self.input_size)
        if batch.shape[-2:] != side:
            batch = F.interpolate(batch, size=side, mode="bilinear", antialias=True, align_corners=False)
        return self.model((batch - self._mean) / self._std)

    def encode(self, images: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        """Pooled pre-logit features of (n, bands, H, W) images in [0, 1].

        Parameters
        ----------
        images : ndarray
            Preprocessed images (min-max normalised, as ImageNet pixels).
        sed : ndarray, optional
            Ignored (image-only encoder).

        Returns
        -------
        ndarray
            float32 (n, dim).
        """
        return forward_in_batches(
            self._features, images, bands=self.in_chans, batch_size=self.batch_size,
            device=self.device, name=f"{self.name} input",
        )


def _as_loaded(source: str | Path | LoadedModel, architecture: str | None = None) -> LoadedModel:
    return source if isinstance(source, LoadedModel) else load_model(source, architecture=architecture)


class AutoencoderEncoder(Encoder):
    """The pooled bottleneck of a tuningfork denoising autoencoder.

    Parameters
    ----------
    source : str, Path or LoadedModel
        An autoencoder model folder, or the loaded folder.
    batch_size : int
        Images per forward pass.
    device : str
        ``auto``, ``cpu``, ``cuda``...
    """

    def __init__(self, source: str | Path | LoadedModel, batch_size: int = 64, device: str = "auto"):
        loaded = _as_loaded(source, AUTOENCODER)
        self.model = loaded.network.to(resolve_device(device)).eval()
        self.config = loaded.config
        self.name = f"autoencoder:{Path(loaded.folder).name}"
        self.dim = self.model.latent_dim
        self.preprocess = loaded.preprocess
        self.batch_size = batch_size

    def encode(self, images: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        """Bottleneck features, float32 (n, dim), of (n, bands, H, W) images preprocessed as in training."""
        return forward_in_batches(
            self.model.embed, images, bands=self.model.in_channels, batch_size=self.batch_size,
            device=next(self.model.parameters()).device, name="autoencoder input",
        )


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

    def __init__(self, model: AstroPT, preprocess: PreprocessConfig, name: str = "astropt", device: str = "auto"):
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
    def from_folder(cls, source: str | Path | LoadedModel, device: str = "auto") -> AstroPTEncoder:
        """The encoder of an AstroPT model folder (``tuningfork pretrain``).

        Parameters
        ----------
        source : str, Path or LoadedModel
            The folder, or the loaded folder.
        device : str
            ``auto``, ``cpu``, ``cuda``...

        Returns
        -------
        AstroPTEncoder
        """
        loaded = _as_loaded(source, ASTROPT)
        return cls(loaded.network, loaded.preprocess, name=f"astropt:{Path(loaded.folder).resolve()}", device=device)

    def encode(self, images: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        batch = torch.as_tensor(np.asarray(images, dtype=np.float32), device=self.device)
        with torch.inference_mode():
            sed_tensor = None
            if sed is not None:
                raw = torch.as_tensor(np.asarray(sed, dtype=np.float32), device=self.device)
                sed_tensor = self.model.standardise_sed(raw)
            return self.model.embed(batch, sed_tensor).float().cpu().numpy()


def network_features(network: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """Pre-logit features of a supervised network: what its output layer reads.

    Parameters
    ----------
    network : torch.nn.Module
        A tuningfork or timm network, with ``forward_features`` and
        ``forward_head(..., pre_logits=True)``.
    images : Tensor
        (batch, bands, H, W).

    Returns
    -------
    Tensor
        (batch, features).
    """
    return network.forward_head(network.forward_features(images), pre_logits=True)


class SupervisedEncoder(Encoder):
    """Pre-logit features of a supervised tuningfork model (``tuningfork train``).

    The network's backbone and head are separate (:func:`network_features`),
    so the features are what its output layer reads, for every architecture
    including ensembles (the members' features side by side).

    Parameters
    ----------
    source : str, Path or LoadedModel
        A classifier or vote model folder, or the loaded folder.
    device : str
        ``auto``, ``cpu``, ``cuda``...
    batch_size : int
        Images per forward pass.
    """

    def __init__(self, source: str | Path | LoadedModel, device: str = "auto", batch_size: int = 64):
        loaded = _as_loaded(source)
        network = loaded.network
        if not (hasattr(network, "forward_features") and hasattr(network, "forward_head")):
            raise ModelError(
                f"{loaded.folder}: the {loaded.config.architecture} network has no separate backbone and head"
            )
        self.name = f"supervised:{Path(loaded.folder).resolve()}"
        self.preprocess = loaded.preprocess
        self.device = resolve_device(device)
        self.network = network.to(self.device).eval()
        self.bands, self.batch_size = loaded.config.in_channels, batch_size
        side = loaded.config.image_size
        with torch.no_grad():
            probe = torch.zeros(1, self.bands, side, side, device=self.device)
            self.dim = int(network_features(self.network, probe).shape[1])

    def encode(self, images: np.ndarray, sed: np.ndarray | None = None) -> np.ndarray:
        return forward_in_batches(
            lambda batch: network_features(self.network, batch), images, bands=self.bands,
            batch_size=self.batch_size, device=self.device, name=f"{self.name} input",
        )


def encoder_from_model(loaded: LoadedModel, *, batch_size: int = 64, device: str = "auto") -> Encoder:
    """The encoder of a loaded model folder of any kind.

    Parameters
    ----------
    loaded : LoadedModel
        From :func:`tuningfork.models.load_model`.
    batch_size : int
        Images per forward pass.
    device : str
        ``auto``, ``cpu``, ``cuda``...

    Returns
    -------
    Encoder

    Raises
    ------
    ModelError
        For a generator, which makes images and has no features.
    """
    architecture = loaded.config.architecture
    if architecture == ASTROPT:
        return AstroPTEncoder.from_folder(loaded, device=device)
    if architecture == AUTOENCODER:
        return AutoencoderEncoder(loaded, batch_size=batch_size, device=device)
    if architecture == GENERATOR:
        raise ModelError(f"{loaded.folder}: a generator is not an encoder")
    return SupervisedEncoder(loaded, device=device, batch_size=batch_size)


def load_encoder(
    spec: str | Path,
    *,
    weights: str | Path | None = None,
    bands: int = 3,
    image_size: int | None = None,
    batch_size: int = 32,
    device: str = "auto",
) -> Encoder:
    """Open an encoder from ``"morphology"``, ``"timm:NAME"`` or any model folder.

    Parameters
    ----------
    spec : str or Path
        ``"morphology"`` (the morphology descriptors); ``timm:NAME`` or a
        plain timm architecture name (then ``weights`` is required); or a
        model folder written by supervised training, ``tuningfork pretrain``
        or the denoising autoencoder's training.
    weights : str or Path, optional
        Local weights of a timm backbone; nothing is ever downloaded.
    bands : int
        Image bands of a timm backbone.
    image_size : int, optional
        Input side in pixels of a timm backbone (default 224, as ImageNet).
    batch_size, device
        As in :func:`encoder_from_model`.

    Returns
    -------
    Encoder

    Raises
    ------
    MissingFileError, CorruptFileError
        For a folder that does not exist or is not a complete model folder,
        or a missing or unreadable weights file.
    ModelError
        For a path that is a file, an architecture name without a trained
        folder, or a generator folder.
    ConfigError
        For a timm backbone without weights, or an unknown timm name.
    """
    text = str(spec)
    if text == MORPHOLOGY_ENCODER:
        return create_model(MORPHOLOGY_ENCODER, in_channels=bands)
    path = Path(spec)
    if path.is_dir():
        return encoder_from_model(load_model(path), batch_size=batch_size, device=device)
    if path.is_file():
        raise ModelError(f"{path}: is a file; pass a model folder, or a timm name with the file as weights")
    source, name = parse_model_name(text)
    if source != TIMM:
        raise ModelError(f"'{text}' is an architecture, not a trained model; pass its model folder")
    if len(path.parts) > 1 or isinstance(spec, Path):
        raise MissingFileError(path, "model folder")
    if weights is None:
        raise ConfigError(f"encoder '{text}' needs a local weights file (--weights); nothing is downloaded")
    return TimmEncoder(
        name, weights, in_chans=bands, input_size=image_size or TIMM_INPUT_SIZE, batch_size=batch_size,
        device=None if device == "auto" else device,
    )
