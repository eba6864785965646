"""``build_catalog``: the morphology catalog of a data set, shard by shard on Dask.

The folder it writes::

    DIR/config.json          resolved settings, input fingerprint, package versions
    DIR/manifest.parquet     the shards (id, first and last row)
    DIR/parts/shard-<id>.parquet     one classification part per shard
    DIR/failures/shard-<id>.parquet  galaxies of a shard that could not be read
    DIR/catalog.parquet      every part merged, keyed by id (and catalog.fits)
    DIR/failures.parquet     every failure

Each part is written atomically, so a run killed at any moment leaves only
complete parts; rerunning the same command on the same input skips them.
Steps that must see every galaxy stay global: the triage thresholds come
from the model folder's calibration, and the expert queue is ranked across
the whole catalog after the merge.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import GalaxyCollection, check_output, write_table
from ..data.batches import progress_bar
from ..data.writers import atomic_path
from ..errors import CatalogError, InputFileError, OutputError
from ..models import load_model
from ..models.folder import CONFIG_FILE as MODEL_CONFIG_FILE
from ..models.folder import package_versions
from ..training.predict import carried_columns, check_labels, model_images, triage_thresholds
from .classify import FAILURES, PARTS, classify_shard, failures_path, part_path
from .cluster import ModelPlugin, open_client
from .manifest import SHARD_SIZE, Manifest, build_manifest

CONFIG_FILE = "config.json"
CATALOG_FILE = "catalog.parquet"
FAILURES_FILE = "failures.parquet"
#: Times a shard's task is rerun after it raised (a transient read error on a network file
#: system); a task whose worker died is rescheduled by the scheduler itself
#: (``distributed.scheduler.allowed-failures``), and resumes from the parts on disk either way.
RETRIES = 3
_RECORDED_PACKAGES = ("tuningfork", "dask", "distributed", "torch", "numpy", "astropy", "pyarrow")


@dataclass(frozen=True)
class CatalogResult:
    """What :func:`build_catalog` did.

    Attributes
    ----------
    catalog : astropy.table.Table
        The merged catalog.
    failures : astropy.table.Table
        ``id``, ``file``, ``error`` of each galaxy that could not be read.
    shards_run, shards_skipped : int
        Shards computed now, and shards a previous run had finished.
    folder : Path
    """

    catalog: object
    failures: object
    shards_run: int
    shards_skipped: int
    folder: Path


def _prepare_folder(folder: Path, settings: dict, overwrite: bool) -> None:
    """Make ``folder`` ready: resume an earlier run of the same settings, or start afresh.

    Raises
    ------
    OutputExistsError
        ``folder`` holds other files, and ``overwrite`` is false.
    OutputError
        ``folder`` holds a catalog of other input or settings, and ``overwrite`` is false.
    """
    config = folder / CONFIG_FILE
    if config.is_file() and not overwrite:
        if json.loads(config.read_text())["settings"] != settings:
            raise OutputError(folder, "holds a catalog of other input or settings (pass --overwrite, "
                                      "or overwrite=True, to replace it)")
        return
    check_output(folder, kind="folder", overwrite=overwrite)
    # Only the files this layout writes are removed: an earlier run's parts
    # would otherwise be taken as finished shards of this one.
    for name in (PARTS, FAILURES):
        for stale in (folder / name).glob("shard-*.parquet"):
            stale.unlink()


def expert_ranks(priority: np.ndarray) -> np.ndarray:
    """Rank of each galaxy in the expert queue of the whole catalog.

    Parameters
    ----------
    priority : ndarray
        ``expert_priority`` (NaN for confident galaxies), in catalog order.

    Returns
    -------
    ndarray
        1 for the most uncertain galaxy; NaN for confident ones.  Ties keep
        catalog order, as :func:`~tuningfork.training.calibration.triage` does.
    """
    priority = np.asarray(priority, dtype=np.float64)
    queued = np.flatnonzero(np.isfinite(priority))
    order = queued[np.argsort(-priority[queued], kind="stable")]
    rank = np.full(len(priority), np.nan)
    rank[order] = np.arange(1, len(order) + 1)
    return rank


def merge_parts(folder: str | Path, manifest: Manifest):
    """Merge the parts of every shard into one catalog and one failures table.

    Parameters
    ----------
    folder : str or Path
        The catalog folder.
    manifest : Manifest

    Returns
    -------
    catalog : astropy.table.Table or None
        The catalog in manifest order, with ``expert_rank`` ranked across
        all shards; None when no galaxy could be read.
    failures : astropy.table.Table
    """
    from astropy.table import Table, vstack

    failed = [failures_path(folder, shard.shard_id) for shard in manifest.shards]
    failed = [Table.read(path) for path in failed if path.is_file()]
    failures = (vstack(failed, metadata_conflicts="silent") if failed
                else Table(names=("id", "file", "error"), dtype=(str, str, str)))
    parts = [Table.read(part_path(folder, shard.shard_id)) for shard in manifest.shards]
    # A shard whose every galaxy failed has an empty part, whose columns have
    # no string type to agree with the others'.
    parts = [part for part in parts if len(part)]
    if not parts:
        return None, failures
    catalog = vstack(parts, join_type="exact", metadata_conflicts="silent")
    if "expert_rank" in catalog.colnames:
        catalog["expert_rank"] = expert_ranks(catalog["expert_priority"])
    return catalog, failures


def build_catalog(
    data: str | Path | GalaxyCollection,
    folder: str | Path,
    classifier: str | Path,
    *,
    target_accuracy: float | None = None,
    min_confidence: float | None = None,
    columns: Sequence[str] = (),
    shard_size: int = SHARD_SIZE,
    batch_size: int = 256,
    workers: int | None = None,
    scheduler: str | None = None,
    fits: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> CatalogResult:
    """Classify every galaxy of a data set on a Dask cluster, shard by shard, resumably.

    Parameters
    ----------
    data : str, Path or GalaxyCollection
        The galaxies; ids must be unique.
    folder : str or Path
        Catalog folder (layout in the module docstring).  One from an
        earlier run of the same input and settings is resumed.
    classifier : str or Path
        Model folder from :func:`~tuningfork.training.train`.
    target_accuracy, min_confidence : float, optional
        Triage, as in :func:`~tuningfork.training.predict`; thresholds come
        from the model folder's validation split, once for the whole run.
    columns : sequence of str
        Catalog columns to carry (``file``, ``ra``, ``dec`` always are).
    shard_size : int
        Galaxies per shard (and per Parquet part).
    batch_size : int
        Galaxies read and passed through the network at a time.
    workers : int, optional
        Processes of the local cluster; one per core by default.
    scheduler : str, optional
        Address of an existing Dask scheduler instead of a local cluster.
    fits : bool
        Also write ``catalog.fits``.
    overwrite : bool
        Replace an existing folder instead of resuming it or refusing.
    progress : bool
        Show a progress bar counting galaxies across shards.

    Returns
    -------
    CatalogResult
        The catalog has the columns of :func:`~tuningfork.training.predict`,
        one row per galaxy that could be read, in input order.

    Raises
    ------
    EmptyCatalogError
        No galaxies.
    CatalogError
        Repeated ids, or no galaxy could be read.
    MissingColumnError
        One of ``columns`` is not in the catalog (checked before any work).
    ModelError
        The model folder is unusable, or the images do not preprocess to its
        input shape (checked on the first galaxy, before any work).
    OutputError
        ``folder`` holds a catalog of other input or settings, or other files.
    ConfigError
        Bad settings, or the scheduler does not answer.
    """
    folder = Path(folder)
    model = load_model(classifier)
    thresholds = triage_thresholds(model, target_accuracy, min_confidence)
    collection = data if isinstance(data, GalaxyCollection) else GalaxyCollection.open(data)
    check_labels(collection, model)
    manifest = build_manifest(collection, shard_size)
    carried_columns(collection.subset([0]), columns)
    _check_first_galaxy(model, collection)
    settings = {
        "input": {"fingerprint": manifest.fingerprint, "count": manifest.count},
        "shard_size": shard_size,
        # The weights' checksum, not only the folder's name: a retrained
        # model in the same folder must not resume the old one's parts.
        "classifier": {"folder": str(model.folder.resolve()), "weights_sha256": json.loads(
            (model.folder / MODEL_CONFIG_FILE).read_text()).get("weights_sha256")},
        "triage": {"target_accuracy": target_accuracy, "min_confidence": min_confidence},
        "columns": list(columns),
    }
    _prepare_folder(folder, settings, overwrite)
    with atomic_path(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps({"settings": settings, "input": collection.name, "versions": package_versions(_RECORDED_PACKAGES)},
                                  indent=2))
    manifest.write(folder)
    todo = [shard for shard in manifest.shards if not part_path(folder, shard.shard_id).is_file()]
    if todo:
        _run_shards(collection, todo, folder, model.folder, thresholds, columns, batch_size,
                    workers, scheduler, progress)
    catalog, failures = merge_parts(folder, manifest)
    write_table(folder / FAILURES_FILE, failures)
    if catalog is None:
        raise CatalogError(f"{collection.name}: none of its {manifest.count} galaxies could be read "
                           f"(see {folder / FAILURES_FILE})")
    write_table(folder / CATALOG_FILE, catalog)
    if fits:
        write_table(folder / "catalog.fits", catalog)
    return CatalogResult(catalog, failures, len(todo), len(manifest.shards) - len(todo), folder)


def _check_first_galaxy(model, collection: GalaxyCollection) -> None:
    """Refuse data the model cannot take (wrong bands or size) before any cluster starts.

    Every task would raise the same error, after its retries; a galaxy that
    does not read is left to its shard's failures table instead.
    """
    try:
        model_images(model, collection.subset([0]), 1)
    except InputFileError:
        pass


def _run_shards(collection, shards, folder, model_folder, thresholds, columns, batch_size,
                workers, scheduler, progress) -> None:
    """Submit one task per shard and wait for all, advancing the progress bar by galaxies."""
    from distributed import as_completed

    with open_client(workers, scheduler) as client:
        client.register_plugin(ModelPlugin([model_folder]), name=f"tuningfork-model-{model_folder}")
        # The key is the shard id, so resubmitting a shard (a retry, a second
        # client) names the same task instead of duplicating it.
        futures = {
            client.submit(classify_shard, collection.subset(slice(shard.start, shard.stop)), shard.shard_id,
                          str(folder.resolve()), str(model_folder), thresholds, tuple(columns), batch_size,
                          key=f"classify-{shard.shard_id}", retries=RETRIES): shard
            for shard in shards
        }
        with progress_bar(sum(len(shard) for shard in shards), progress, "classifying") as advance:
            for future in as_completed(futures):
                future.result()
                advance(len(futures[future]))
