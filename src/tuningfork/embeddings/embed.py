"""Embedding extraction over a collection, and embedding of a new query image.

Every encoder follows the one contract of :mod:`tuningfork.models.encoder`
and comes from :func:`tuningfork.models.load_encoder` (``"morphology"``,
``"timm:NAME"`` with a local weights file, or any model folder), so
extraction, search by a new image and the web service all prepare pixels the
same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data import GalaxyCollection, check_output
from ..errors import ConfigError, ModelError, UnsupportedFormatError
from ..models import Encoder, load_encoder
from ..preprocessing import PreprocessConfig, Preprocessor
from .store import EmbeddingSet, EmbeddingWriter, load_embeddings


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
        The encoder that made the embeddings (see :func:`tuningfork.models.load_encoder`).
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
        encoder_source, weights=weights, bands=image.shape[0], image_size=size, device=device
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
    overwrite: bool = False,
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
        See :func:`tuningfork.models.load_encoder`.
    out_path : str or Path
        Output ``.parquet`` (ids + vectors); a float32 ``.npy`` of the vectors
        is written beside it.  Both replace earlier files only on success.
    batch_size : int
        Galaxies per batch.
    progress : bool
        Show a progress bar.
    overwrite : bool
        Replace an existing output (else ``OutputExistsError``, before any work).

    Returns
    -------
    EmbeddingSet
        The written embeddings (vectors memory-mapped from the NPY).
    """
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".parquet":
        raise UnsupportedFormatError(out_path, "embeddings output must end in .parquet")
    check_output(out_path, overwrite=overwrite)
    if len(collection) == 0:
        raise ConfigError(f"{collection.name}: no galaxies to embed")
    sed = collection.sed_values(encoder.sed_columns) if encoder.sed_columns else None
    preprocessor = Preprocessor(encoder.preprocess)
    metadata = {**encoder.describe(), "source": collection.name}
    with EmbeddingWriter(out_path, len(collection), encoder.dim, metadata) as writer:
        start = 0
        for batch in collection.iter_batches(
            batch_size, preprocess=preprocessor, progress=progress
        ):
            batch_sed = None if sed is None else sed[start : start + len(batch)]
            writer.write(batch.ids, encoder.encode(batch.images, batch_sed))
            start += len(batch)
    return load_embeddings(out_path)
