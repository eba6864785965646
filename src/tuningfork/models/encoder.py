"""The one encoder contract: images in, one float32 vector per galaxy out.

An :class:`Encoder` has a ``name``, an output dimension ``dim``, the
``preprocess`` (a :class:`~tuningfork.preprocessing.PreprocessConfig`) its
images need, the catalog ``sed_columns`` it reads besides pixels, and
``encode(images, sed=None) -> (n, dim)``.  The encoders themselves, and
:func:`~tuningfork.models.encoding.load_encoder` that opens any of them from
one spec, are in :mod:`tuningfork.models.encoding`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..data import GalaxyCollection
from ..errors import ImageShapeError
from ..preprocessing import PreprocessConfig, Preprocessor


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """The torch device to run on: ``auto`` (or None) is the first GPU when there is one, else the CPU.

    Parameters
    ----------
    device : str, torch.device or None
        ``auto``, ``cpu``, ``cuda``, ``cuda:1``...

    Returns
    -------
    torch.device
    """
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def forward_in_batches(
    function: Callable[[torch.Tensor], torch.Tensor],
    images: np.ndarray,
    *,
    bands: int,
    batch_size: int,
    device: torch.device,
    name: str,
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
        """What made the embeddings, stored in their Parquet metadata.

        Returns
        -------
        dict
            ``encoder``, ``dim``, ``preprocessing`` and ``sed_columns``.
        """
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


def embed_arrays(encoder: Encoder, images: Sequence[np.ndarray] | np.ndarray, batch_size: int = 64) -> np.ndarray:
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
        encoder.encode(batch.images) for batch in collection.iter_batches(batch_size, preprocessor)
    ]
    return np.concatenate(parts).astype(np.float32)
