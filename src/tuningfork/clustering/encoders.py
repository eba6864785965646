"""Encoders: images in, one feature vector per galaxy out.

Every encoder has ``encode(images) -> (n, dim)`` and a ``name``:

* :class:`~tuningfork.clustering.descriptors.MorphologyEncoder` (the
  default, ``"morphology"``): rotation-invariant morphology descriptors,
  no weights needed;
* :class:`TimmEncoder`: any timm backbone (ConvNeXt-large in the paper),
  weights read from a local file (never downloaded), pooled pre-logit
  features;
* :class:`AutoencoderEncoder`: the pooled bottleneck of a tuningfork
  denoising autoencoder folder;
* the penultimate layer of a supervised model folder, and the foundation
  model (an AstroPT folder), through :mod:`tuningfork.embeddings.embed`.

:func:`load_encoder` picks one from a timm name or a model folder;
:class:`PolarStep` is the polar-coordinate extension applied before encoding;
:func:`rotation_consistency` measures how much it buys.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch.nn import functional as F

from ..errors import ImageShapeError, ModelError

#: Architecture name of the self-supervised foundation model's folders
#: (:mod:`tuningfork.embeddings.astropt`).
FOUNDATION_ARCHITECTURE = "astropt"
#: Optional prefix of timm names, as ``tuningfork embed`` writes them.
TIMM_PREFIX = "timm:"


class Encoder(Protocol):
    """What the clustering pipeline needs from an encoder."""

    name: str

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Map (n, bands, H, W) float32 images to (n, dim) features."""


def forward_in_batches(
    function, images: np.ndarray, *, bands: int, batch_size: int, device, name: str
) -> np.ndarray:
    """Run a torch function over a (n, bands, H, W) stack, batch by batch, without gradients.

    Parameters
    ----------
    function : callable
        Maps a float32 tensor batch on ``device`` to a tensor.
    images : ndarray
        (n, bands, H, W) images; not modified.
    bands : int
        Bands the function expects.
    batch_size : int
        Images per call.
    device : torch.device
        Where the batches go.
    name : str
        What to call the input in error messages.

    Returns
    -------
    ndarray
        float32, the outputs concatenated along the first axis.

    Raises
    ------
    ImageShapeError
        For a stack that is not 4-D or has the wrong number of bands.
    """
    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4:
        raise ImageShapeError(name, f"expected a (n, bands, H, W) stack, got shape {array.shape}")
    if array.shape[1] != bands:
        raise ImageShapeError(name, f"{array.shape[1]} bands but the encoder expects {bands}")
    outputs = []
    with torch.no_grad():
        for start in range(0, array.shape[0], batch_size):
            batch = torch.from_numpy(array[start : start + batch_size].copy()).to(device)
            outputs.append(function(batch).float().cpu().numpy())
    return np.concatenate(outputs).astype(np.float32, copy=False)


def _default_device(device: str | None) -> torch.device:
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


class TimmEncoder:
    """A timm backbone whose pooled features describe each galaxy.

    Parameters
    ----------
    model_name : str
        timm architecture, e.g. ``convnext_large`` (the paper) or
        ``convnext_tiny``.
    weights : str or Path, optional
        Local ``.safetensors`` or torch checkpoint of the backbone, read by
        :func:`tuningfork.models.backbones.load_pretrained_file` (a
        classification head in it is dropped).  None leaves the weights
        random, which is only meaningful for tests and ablations.
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
        input_size: int = 224,
        batch_size: int = 32,
        device: str | None = None,
    ):
        from ..models.backbones import timm_backbone

        self.name = model_name
        self.in_chans = in_chans
        self.input_size = input_size
        self.batch_size = batch_size
        self.device = _default_device(device)
        # A one-logit head is built only so the shared loader can drop the
        # file's classifier; pooled pre-logit features are what we keep.
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

    @property
    def dim(self) -> int:
        """Length of the feature vectors."""
        return int(self.model.num_features)

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        side = (self.input_size, self.input_size)
        if batch.shape[-2:] != side:
            batch = F.interpolate(
                batch, size=side, mode="bilinear", antialias=True, align_corners=False
            )
        return self.model((batch - self._mean) / self._std)

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Pooled pre-logit features of (n, bands, H, W) images in [0, 1].

        Parameters
        ----------
        images : ndarray
            Preprocessed images (min-max normalised, as ImageNet pixels).

        Returns
        -------
        ndarray
            float32 (n, dim).
        """
        return forward_in_batches(
            self._features,
            images,
            bands=self.in_chans,
            batch_size=self.batch_size,
            device=self.device,
            name=f"{self.name} input",
        )


class AutoencoderEncoder:
    """The pooled bottleneck of a tuningfork denoising autoencoder.

    Parameters
    ----------
    folder : str or Path
        Model folder written by
        :func:`~tuningfork.clustering.autoencoder.save_autoencoder`.
    batch_size : int
        Images per forward pass.
    """

    def __init__(self, folder: str | Path, batch_size: int = 64):
        from .autoencoder import load_autoencoder

        self.model, self.config = load_autoencoder(folder)
        self.name = f"autoencoder:{Path(folder).name}"
        self.batch_size = batch_size

    @property
    def dim(self) -> int:
        """Length of the feature vectors."""
        return self.model.latent_dim

    @property
    def preprocess(self) -> dict | None:
        """The PreprocessConfig settings (dict) the autoencoder was trained with."""
        return self.config.preprocessing

    def encode(self, images: np.ndarray) -> np.ndarray:
        """Bottleneck features of (n, bands, H, W) images.

        Parameters
        ----------
        images : ndarray
            Images preprocessed as for training (see :attr:`preprocess`).

        Returns
        -------
        ndarray
            float32 (n, dim).
        """
        from .autoencoder import embed

        return embed(self.model, images, self.batch_size)


def load_encoder(
    spec: str | Path,
    *,
    weights: str | Path | None = None,
    in_chans: int = 3,
    input_size: int = 224,
    batch_size: int = 32,
) -> Encoder:
    """Build an encoder from a timm architecture name or a model folder.

    Parameters
    ----------
    spec : str or Path
        ``"morphology"`` (the morphology descriptors), a folder (a tuningfork
        model folder) or a timm architecture name, optionally written
        ``timm:<name>``.
    weights : str or Path, optional
        Local weights of the timm architecture (ignored for folders).
    in_chans, input_size, batch_size : int
        See :class:`TimmEncoder`.

    Returns
    -------
    Encoder
        Folder encoders also carry the preprocessing they were trained
        with as ``preprocess``.

    Raises
    ------
    MissingFileError, CorruptFileError
        For a folder that is not a complete model folder, or a missing or
        unreadable weights file.
    ModelError
        For a path that is a file or a folder that does not exist.
    ConfigError
        For an unknown timm name.
    """
    from ..models.folder import read_config
    from .autoencoder import ARCHITECTURE
    from .descriptors import MORPHOLOGY_ENCODER, MorphologyEncoder

    if str(spec) == MORPHOLOGY_ENCODER:
        return MorphologyEncoder()
    path = Path(spec)
    if path.is_dir():
        architecture = read_config(path)[0].architecture
        if architecture == ARCHITECTURE:
            return AutoencoderEncoder(path, batch_size=batch_size)
        from ..embeddings.embed import AstroPTEncoder, SupervisedEncoder

        if architecture == FOUNDATION_ARCHITECTURE:
            return AstroPTEncoder.from_folder(path)
        from ..models.folder import load_model

        return SupervisedEncoder(load_model(path))
    if path.is_file():
        raise ModelError(
            f"{path}: is a file; pass a model folder, or a timm name with the file as weights"
        )
    if len(path.parts) > 1:
        raise ModelError(f"{path}: encoder model folder not found")
    name = str(spec).removeprefix(TIMM_PREFIX)
    return TimmEncoder(
        name, weights, in_chans=in_chans, input_size=input_size, batch_size=batch_size
    )


@dataclass(frozen=True)
class PolarStep:
    """Polar resampling with an extended angle axis, applied before encoding.

    In polar coordinates around the centre, a rotation of the galaxy is a
    cyclic shift along the angle axis; repeating the first ``extension`` of
    the turn after 2 pi lets the convolutions see across the seam, so a
    translation-tolerant encoder becomes rotation-tolerant.

    Parameters
    ----------
    n_radii : int
        Radial samples (rows).
    n_angles : int
        Angular samples over a full turn (columns before the extension).
    extension : float
        Fraction of the turn repeated after 2 pi.
    """

    n_radii: int = 32
    n_angles: int = 64
    extension: float = 0.5

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Resample (n, bands, H, W) images to (n, bands, n_radii, columns)."""
        from ..preprocessing import to_polar

        return to_polar(images, self.n_radii, self.n_angles, extension=self.extension)


def cosine_similarity_rows(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine similarity of corresponding rows of two (n, dim) matrices."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, np.finfo(np.float64).tiny)


def rotation_consistency(
    encoder: Encoder,
    images: np.ndarray,
    *,
    polar: PolarStep | None = None,
    angles_deg: tuple[float, ...] = (45.0, 90.0, 135.0, 180.0, 270.0),
    standardise: bool = False,
) -> dict[str, float]:
    """Mean cosine similarity between embeddings of galaxies and of rotated copies.

    Embeddings are centred on the mean embedding of the unrotated galaxies
    first: features of every image share a large common component (all
    ReLU outputs are positive), which would otherwise push every similarity
    close to 1 and hide what rotation changes.

    Parameters
    ----------
    encoder : Encoder
        The encoder to test (its input band count must match ``images``).
    images : ndarray
        (n, bands, H, W) preprocessed, centred galaxies; n >= 2.
    polar : PolarStep, optional
        Apply the polar step to originals and rotated copies before encoding.
    angles_deg : tuple of float
        Rotation angles, in degrees counter-clockwise.
    standardise : bool
        Also divide every feature by its spread among the unrotated
        galaxies, so that features with large units (a descriptor in
        pixels next to ratios) do not dominate the similarity.

    Returns
    -------
    dict
        ``mean`` over all angles and galaxies, and ``angle_<deg>`` per angle.
    """
    from scipy.ndimage import rotate

    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4 or array.shape[0] < 2:
        raise ImageShapeError(
            "rotation_consistency", f"expected (n >= 2, bands, H, W), got shape {array.shape}"
        )
    prepare = polar if polar is not None else (lambda batch: batch)
    reference = encoder.encode(prepare(array))
    centre = reference.mean(axis=0)
    spread = reference.std(axis=0) if standardise else np.ones_like(centre)
    spread = np.where(spread > 0, spread, 1.0)
    scores = {}
    for angle in angles_deg:
        # The galaxy sits at the stamp centre, where rotate() turns about.
        rotated = rotate(array, angle, axes=(-1, -2), reshape=False, order=1, mode="nearest")
        similarity = cosine_similarity_rows(
            (reference - centre) / spread, (encoder.encode(prepare(rotated)) - centre) / spread
        )
        scores[f"angle_{angle:g}"] = float(similarity.mean())
    scores["mean"] = float(np.mean([scores[f"angle_{a:g}"] for a in angles_deg]))
    return scores
