"""One shard of the catalog, as a Dask worker runs it: every stage from one read of each galaxy.

Each batch of raw images is decoded once and held in memory; every stage
applies its own model's preprocessing to it: the classifier through the same
batched inference and table builder as :func:`tuningfork.training.predict`,
the clustering through :meth:`FittedClustering.assign`, the encoder through
its :class:`~tuningfork.models.Encoder` contract, the morphometry through
:func:`~tuningfork.morphometry.morphometry_catalog`.  A galaxy whose file
cannot be read is recorded in the shard's failures table and the rest of its
shard goes on.  The part is written atomically and last (after the shard's
embedding vectors), so its presence means the shard is complete.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import GalaxyCollection, write_table
from ..data.batches import DECODE_BATCH, preprocess_images
from ..data.writers import atomic_path
from ..errors import InputFileError
from ..models.inference import network_logits
from ..training.predict import carried_columns, interpret, prediction_table
from .local import cached_clustering, cached_encoder, cached_network, cached_stored

PARTS = "parts"
FAILURES = "failures"
VECTORS = "vectors"
#: Catalog names of the columns of :meth:`VoteResult.to_table`; ``vote_fraction``
#: alone would be mistaken for a Galaxy Zoo answer's fraction.
GROUP_COLUMNS = {"group": "group", "classified": "group_classified", "vote_fraction": "group_vote_fraction",
                 "second_group": "second_group", "second_fraction": "second_group_fraction"}


def part_path(folder: str | Path, shard_id: str) -> Path:
    """Where the catalog part of a shard is written."""
    return Path(folder) / PARTS / f"shard-{shard_id}.parquet"


def failures_path(folder: str | Path, shard_id: str) -> Path:
    """Where the failures table of a shard is written."""
    return Path(folder) / FAILURES / f"shard-{shard_id}.parquet"


def vectors_path(folder: str | Path, shard_id: str) -> Path:
    """Where the embedding vectors of a shard are written (rows as in its part)."""
    return Path(folder) / VECTORS / f"shard-{shard_id}.npy"


@dataclass(frozen=True)
class ShardPlan:
    """What every shard computes: small, so it travels with each task (models never do).

    Attributes
    ----------
    classifier : str, optional
        Classifier folder (loaded once per worker).
    thresholds : ndarray, optional
        Triage thresholds of the whole run (never recomputed per shard).
    clustering : str, optional
        Fitted clustering folder.
    encoder : tuple, optional
        ``(spec, weights, bands, batch_size)`` of :func:`~tuningfork.models.load_encoder`.
    morphometry : dict, optional
        Options of :func:`~tuningfork.morphometry.morphometry_catalog`.
    columns : tuple of str
        Catalog columns to carry.
    batch_size : int
        Galaxies read at a time (and per forward pass).
    engine : {"torch", "onnx"}
        Runs the classifier's network (:func:`cached_network`).
    graph : str, optional
        The classifier's exported graph, for ``"onnx"`` (then workers never import torch).
    """

    classifier: str | None = None
    thresholds: np.ndarray | None = None
    clustering: str | None = None
    encoder: tuple | None = None
    morphometry: dict | None = None
    columns: tuple[str, ...] = ()
    batch_size: int = 256
    engine: str = "torch"
    graph: str | None = None


def _scale_for(plan: ShardPlan):
    """The decoding reduction every stage of the plan allows (:meth:`PreprocessConfig.decode_scale`)."""
    from ..preprocessing import PreprocessConfig

    if plan.clustering is not None or plan.morphometry is not None:
        # They read the decoded images at their stored resolution.
        return lambda height, width: 1
    configs = []
    if plan.classifier is not None:
        configs.append(PreprocessConfig.from_dict(cached_stored(plan.classifier).config.preprocessing))
    if plan.encoder is not None:
        configs.append(cached_encoder(*plan.encoder).preprocess)
    return lambda height, width: min((config.decode_scale(height, width) for config in configs), default=1)


def _read_raw(chunk: GalaxyCollection, failures: list[dict], scale_for) -> tuple[list[np.ndarray], list[int],
                                                                                 list[int]]:
    """Images of a chunk (decoded at the reductions ``scale_for`` allows), those reductions, and the rows
    that read, recording the rows that did not."""
    try:
        images, scales = chunk.scaled_images(scale_for)
        return images, scales, list(range(len(chunk)))
    except InputFileError:
        pass
    # Galaxy by galaxy only once a batch has failed, so the good ones of a
    # bad batch are read twice but a clean batch is read once.
    images, scales, rows = [], [], []
    for row in range(len(chunk)):
        try:
            image, scale = chunk.subset([row]).scaled_images(scale_for)
            images += image
            scales += scale
            rows.append(row)
        except InputFileError as error:
            failures.append({"id": chunk.ids[row], "file": str(error.path),
                             "error": str(error).splitlines()[0]})
    return images, scales, rows


def _batch_outputs(plan: ShardPlan, chunk: GalaxyCollection, images: list[np.ndarray], scales: list[int],
                   ids: list[str]) -> dict:
    """Every stage's raw output for one batch of decoded galaxies, each stage preprocessing them its own way."""
    from astropy.table import Table

    from ..preprocessing import PreprocessConfig, Preprocessor

    def preprocessed(config: PreprocessConfig) -> np.ndarray:
        return preprocess_images(images, Preprocessor(config), lambda row: ids[row], chunk.name, scales)

    outputs = {}
    if plan.classifier is not None:
        model = cached_stored(plan.classifier)
        pixels = preprocessed(PreprocessConfig.from_dict(model.config.preprocessing))
        outputs["logits"] = network_logits(cached_network(plan.classifier, plan.engine, plan.graph), pixels, plan.batch_size)
    if plan.clustering is not None:
        # The clustering reads a collection (its encoder may batch differently): the decoded images, in memory.
        read = GalaxyCollection.from_arrays(images, Table({"id": ids}))
        outputs["groups"] = cached_clustering(plan.clustering).assign(read).to_table(ids)
    if plan.encoder is not None:
        encoder = cached_encoder(*plan.encoder)
        sed = chunk.sed_values(encoder.sed_columns) if encoder.sed_columns else None
        outputs["vectors"] = encoder.encode(preprocessed(encoder.preprocess), sed)
    if plan.morphometry is not None:
        from ..morphometry import morphometry_catalog

        outputs["morphometry"] = morphometry_catalog(images, ids, n_workers=1, **plan.morphometry)
    return outputs


def _shard_table(plan: ShardPlan, ids: list[str], carried, outputs: dict[str, list]):
    """Join the stages' outputs of a shard's read galaxies into its catalog part, keyed by ``id``."""
    from astropy.table import Table, vstack

    if plan.classifier is not None:
        model = cached_stored(plan.classifier)
        table = prediction_table(ids, interpret(np.concatenate(outputs["logits"]), model), model,
                                 plan.thresholds, carried)
    else:
        table = Table({"id": ids})
        for name in carried.colnames:
            table[name] = carried[name]
    if plan.clustering is not None:
        groups = vstack(outputs["groups"], metadata_conflicts="silent")
        for name, column in GROUP_COLUMNS.items():
            table[column] = groups[name]
    if plan.morphometry is not None:
        measured = vstack(outputs["morphometry"], metadata_conflicts="silent")
        for name in measured.colnames[1:]:
            table[name] = measured[name]
    return table


def run_shard(collection: GalaxyCollection, shard_id: str, folder: str | Path, plan: ShardPlan) -> dict:
    """Compute every stage of one shard and write its part (and failures table, vectors).

    Parameters
    ----------
    collection : GalaxyCollection
        The shard's galaxies (a subset: paths and positions only).
    shard_id : str
        From the manifest; names the files.
    folder : str or Path
        The catalog folder.
    plan : ShardPlan
        The stages.

    Returns
    -------
    dict
        ``shard_id``, ``rows`` (galaxies in the part) and ``failures``.
    """
    from astropy.table import Table

    carried = carried_columns(collection, plan.columns)
    failures: list[dict] = []
    kept: list[int] = []
    outputs: dict[str, list] = {}
    read_batch = min(plan.batch_size, DECODE_BATCH)
    scale_for = _scale_for(plan)
    for start in range(0, len(collection), read_batch):
        chunk = collection.subset(slice(start, start + read_batch))
        images, scales, rows = _read_raw(chunk, failures, scale_for)
        if not rows:
            continue
        kept.extend(start + row for row in rows)
        batch = _batch_outputs(plan, chunk.subset(rows), images, scales, [chunk.ids[row] for row in rows])
        for name, value in batch.items():
            outputs.setdefault(name, []).append(value)
    ids = collection.ids
    # A shard whose every galaxy failed has an empty part, which the merge leaves out.
    table = _shard_table(plan, [ids[row] for row in kept], carried[kept], outputs) if kept else Table({"id": []})
    if failures:
        write_table(failures_path(folder, shard_id), Table(rows=failures, names=("id", "file", "error")))
    if plan.encoder is not None and kept:
        path = vectors_path(folder, shard_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, np.concatenate(outputs["vectors"]).astype(np.float32))
    write_table(part_path(folder, shard_id), table)
    return {"shard_id": shard_id, "rows": len(table), "failures": len(failures)}
