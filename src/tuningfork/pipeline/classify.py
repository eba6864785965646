"""The classification stage of one shard, as a Dask worker runs it.

Each galaxy is read and preprocessed once, batch by batch, with the model's
own preprocessing; the network runs through the same batched inference and
the same table builder as :func:`tuningfork.training.predict`.  A galaxy whose
file cannot be read is recorded in the shard's failures table and the rest
of its shard goes on.  The part is written atomically and last, so its
presence means the shard is complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data import GalaxyCollection, write_table
from ..errors import InputFileError
from ..models import LoadedModel
from ..models.runtime import network_logits
from ..training.predict import carried_columns, interpret, model_images, prediction_table
from .cluster import cached_model

PARTS = "parts"
FAILURES = "failures"


def part_path(folder: str | Path, shard_id: str) -> Path:
    """Where the classification part of a shard is written."""
    return Path(folder) / PARTS / f"shard-{shard_id}.parquet"


def failures_path(folder: str | Path, shard_id: str) -> Path:
    """Where the failures table of a shard is written."""
    return Path(folder) / FAILURES / f"shard-{shard_id}.parquet"


def _read_chunk(model: LoadedModel, chunk: GalaxyCollection, failures: list[dict]) -> tuple[np.ndarray, list[int]]:
    """Preprocessed images of a chunk and the rows that read, recording the rows that did not."""
    try:
        return model_images(model, chunk, len(chunk)), list(range(len(chunk)))
    except InputFileError:
        pass
    # Galaxy by galaxy only once a batch has failed, so the good ones of a
    # bad batch are read twice but a clean batch is read once.
    images, rows = [], []
    for row in range(len(chunk)):
        try:
            images.append(model_images(model, chunk.subset([row]), 1)[0])
            rows.append(row)
        except InputFileError as error:
            failures.append({"id": chunk.ids[row], "file": str(error.path),
                             "error": str(error).splitlines()[0]})
    shape = (0, model.config.in_channels, model.config.image_size, model.config.image_size)
    return (np.stack(images) if images else np.zeros(shape, dtype=np.float32)), rows


def classify_shard(
    collection: GalaxyCollection,
    shard_id: str,
    folder: str | Path,
    model_folder: str | Path,
    thresholds: np.ndarray | None,
    columns: Sequence[str] = (),
    batch_size: int = 256,
) -> dict:
    """Classify one shard and write its part (and failures table, if any).

    Parameters
    ----------
    collection : GalaxyCollection
        The shard's galaxies (a subset: paths and positions only).
    shard_id : str
        From the manifest; names the files.
    folder : str or Path
        The catalog folder.
    model_folder : str or Path
        Classifier folder, loaded once per worker (:func:`cached_model`).
    thresholds : ndarray or None
        Triage thresholds of the whole run (never recomputed per shard).
    columns : sequence of str
        Catalog columns to carry.
    batch_size : int
        Galaxies read and passed through the network at a time.

    Returns
    -------
    dict
        ``shard_id``, ``rows`` (galaxies classified) and ``failures``.
    """
    model = cached_model(model_folder)
    carried = carried_columns(collection, columns)
    failures: list[dict] = []
    kept: list[int] = []
    logits = []
    for start in range(0, len(collection), batch_size):
        chunk = collection.subset(slice(start, start + batch_size))
        images, rows = _read_chunk(model, chunk, failures)
        kept.extend(start + row for row in rows)
        logits.append(network_logits(model.network, images, batch_size) if len(images)
                      else np.zeros((0, model.config.num_outputs), dtype=np.float32))
    outputs = interpret(np.concatenate(logits), model)
    ids = collection.ids
    table = prediction_table([ids[row] for row in kept], outputs, model, thresholds, carried[kept])
    if failures:
        from astropy.table import Table

        write_table(failures_path(folder, shard_id), Table(rows=failures, names=("id", "file", "error")))
    write_table(part_path(folder, shard_id), table)
    return {"shard_id": shard_id, "rows": len(table), "failures": len(failures)}
