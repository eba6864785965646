"""``build_catalog``: the morphology catalog of a data set, shard by shard on Dask.

The folder it writes::

    DIR/config.json          resolved stage config, models' checksums, input fingerprint, package versions
    DIR/manifest.parquet     the shards (id, first and last row)
    DIR/parts/shard-<id>.parquet     one catalog part per shard (every stage's columns)
    DIR/vectors/shard-<id>.npy       the shard's embedding vectors (embedding stage)
    DIR/failures/shard-<id>.parquet  galaxies of a shard that could not be read
    DIR/clustering-fit/      the clustering fitted on a sample (when none was given)
    DIR/catalog.parquet      every part merged, keyed by id (and catalog.fits)
    DIR/embeddings.parquet, .npy, .faiss   vectors in catalog order and their index
    DIR/failures.parquet     every failure

Each part is written atomically, so a run killed at any moment leaves only
complete parts; rerunning the same command on the same input skips them.
Steps that must see every galaxy stay global: the triage thresholds come
from the model folder's calibration, the expert queue is ranked across the
whole catalog after the merge, the clustering is fitted on a random sample
drawn across all shards, and the faiss index is trained on a random sample
and filled with every shard's vectors.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import GalaxyCollection, check_output, write_table
from ..data.batches import progress_bar
from ..data.writers import atomic_path
from ..errors import CatalogError, ConfigError, InputFileError, OutputError
from ..models import load_model
from ..models.folder import CONFIG_FILE as MODEL_CONFIG_FILE
from ..models.folder import package_versions
from ..training.predict import (
    INFERENCE_ENGINES,
    carried_columns,
    check_labels,
    model_images,
    triage_thresholds,
)
from .cluster import ModelPlugin, cached_clustering, cached_encoder, open_client
from .config import STAGES, PipelineConfig
from .manifest import Manifest, build_manifest
from .shard import (
    FAILURES,
    PARTS,
    VECTORS,
    ShardPlan,
    failures_path,
    part_path,
    run_shard,
    vectors_path,
)

CONFIG_FILE = "config.json"
CATALOG_FILE = "catalog.parquet"
FAILURES_FILE = "failures.parquet"
EMBEDDINGS_FILE = "embeddings.parquet"
#: Folder of the clustering fitted on a sample, when no fitted one is given.
FIT_FOLDER = "clustering-fit"
#: The ``clusterer`` that asks for a clustering fitted on a sample of the input.
FIT = "fit"
#: Files whose checksums identify a fitted clustering folder.
_CLUSTERING_FILES = ("config.json", "pca.npz", "voting.json", "voting.npz", "snr_trend.npz")
#: Galaxies whose neighbours are searched at a time.
_SEARCH_CHUNK = 50_000
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
    skipped : dict of str to str
        Each stage that did not run, and why.
    """

    catalog: object
    failures: object
    shards_run: int
    shards_skipped: int
    folder: Path
    skipped: dict = field(default_factory=dict)


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
    for name in (PARTS, FAILURES, VECTORS):
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


def resolve_config(
    config: PipelineConfig | str | Path | None = None,
    *,
    classifier: str | Path | None = None,
    target_accuracy: float | None = None,
    min_confidence: float | None = None,
    engine: str | None = None,
    clusterer: str | Path | None = None,
    encoder: str | None = None,
    morphometry: bool = False,
    columns: Sequence[str] = (),
    shard_size: int | None = None,
) -> tuple[PipelineConfig, dict[str, str]]:
    """The stages of a run: a config file or object, completed by explicit options.

    Parameters
    ----------
    config : PipelineConfig, str or Path, optional
        The stages (a ``pipeline.toml``); without one, every stage whose
        model is given runs.
    classifier, target_accuracy, min_confidence, engine
        The classification stage (added, or overriding the config's).
    clusterer : str or Path, optional
        A fitted clustering folder, or ``"fit"`` to fit one on a sample.
    encoder : str, optional
        The embedding stage's encoder (``"morphology"`` needs no model).
    morphometry : bool
        Add the (slow) morphometry stage.
    columns : sequence of str
        Catalog columns to carry, added to the config's.
    shard_size : int, optional
        Overrides the config's.

    Returns
    -------
    config : PipelineConfig
    skipped : dict of str to str
        Each stage that does not run, and why.

    Raises
    ------
    ConfigError
        No stage would run.
    """
    from .config import (
        ClassificationStage,
        ClusteringStage,
        EmbeddingStage,
        MorphometryStage,
        load_pipeline_config,
    )

    from_file = config is not None
    if config is None:
        config = PipelineConfig()
    elif not isinstance(config, PipelineConfig):
        config = load_pipeline_config(config)
    else:
        config = PipelineConfig.from_dict(config.to_dict())
    if classifier is not None or target_accuracy is not None or min_confidence is not None or engine is not None:
        stage = config.classification or ClassificationStage()
        stage.model = str(classifier) if classifier is not None else stage.model
        stage.engine = engine or stage.engine
        if target_accuracy is not None or min_confidence is not None:
            stage.target_accuracy, stage.min_confidence = target_accuracy, min_confidence
        config.classification = stage
    if clusterer is not None:
        config.clustering = config.clustering or ClusteringStage()
        config.clustering.model = None if str(clusterer) == FIT else str(clusterer)
    if encoder is not None:
        config.embeddings = config.embeddings or EmbeddingStage()
        config.embeddings.encoder = str(encoder)
    if morphometry and config.morphometry is None:
        config.morphometry = MorphometryStage()
    config.columns = list(dict.fromkeys([*config.columns, *columns]))
    if shard_size is not None:
        config.shard_size = shard_size
    if config.classification is not None and config.classification.model is None:
        raise ConfigError("the classification stage needs a model folder (--classifier, or model = ... in the config)")
    if config.classification is not None and config.classification.engine not in INFERENCE_ENGINES:
        raise ConfigError(f"unknown inference engine '{config.classification.engine}' "
                          f"(choose from {', '.join(INFERENCE_ENGINES)})")
    if from_file:
        why = dict.fromkeys(STAGES, "not in the config")
    else:
        why = {"classification": "no --classifier", "clustering": "no --clusterer (a fitted clustering folder, "
               "or 'fit')", "embeddings": "no --encoder", "morphometry": "slow; pass --morphometry"}
    skipped = {name: reason for name, reason in why.items() if getattr(config, name) is None}
    if not config.stages():
        raise ConfigError("nothing to compute: give --classifier, --clusterer, --encoder, --morphometry "
                          "or a --config naming the stages")
    return config, skipped


def _identity(folder: str | Path, files: Sequence[str]) -> dict:
    """A model folder and the checksums of its files, so a retrained model never resumes the old one's parts."""
    folder = Path(folder).resolve()
    return {"folder": str(folder), **{name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
                                      for name in files if (folder / name).is_file()}}


def build_catalog(
    data: str | Path | GalaxyCollection,
    folder: str | Path,
    classifier: str | Path | None = None,
    *,
    config: PipelineConfig | str | Path | None = None,
    clusterer: str | Path | None = None,
    encoder: str | None = None,
    morphometry: bool = False,
    target_accuracy: float | None = None,
    min_confidence: float | None = None,
    engine: str | None = None,
    columns: Sequence[str] = (),
    shard_size: int | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    fits: bool = False,
    overwrite: bool = False,
    progress: bool = False,
) -> CatalogResult:
    """Compute every stage for every galaxy of a data set on a Dask cluster, shard by shard, resumably.

    Parameters
    ----------
    data : str, Path or GalaxyCollection
        The galaxies; ids must be unique.
    folder : str or Path
        Catalog folder (layout in the module docstring).  One from an
        earlier run of the same input and settings is resumed.
    classifier : str or Path, optional
        Model folder from :func:`~tuningfork.training.train`.
    config : PipelineConfig, str or Path, optional
        The stages and their models (a ``pipeline.toml``); the other options
        add to it (see :func:`resolve_config`).
    clusterer : str or Path, optional
        A fitted clustering folder, or ``"fit"`` to fit one first on a
        random sample drawn across all shards.
    encoder : str, optional
        Encoder of the embedding stage (``"morphology"``, ``"timm:NAME"``,
        or a model folder).
    morphometry : bool
        Also measure statmorph's quantities (slow).
    target_accuracy, min_confidence : float, optional
        Triage, as in :func:`~tuningfork.training.predict`; thresholds come
        from the model folder's validation split, once for the whole run.
    engine : {"torch", "onnx"}, optional
        Runs the classifier's network (see
        :class:`~tuningfork.pipeline.config.ClassificationStage`); the
        config's, else torch.
    columns : sequence of str
        Catalog columns to carry (``file``, ``ra``, ``dec`` always are).
    shard_size : int, optional
        Galaxies per shard (and per Parquet part); the config's, else
        :data:`~tuningfork.pipeline.manifest.SHARD_SIZE`.
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
        The catalog has one row per galaxy that could be read, in input
        order: ``id``, the carried columns, then each stage's columns
        (those of :func:`~tuningfork.training.predict`; ``group``,
        ``group_classified``, ``group_vote_fraction``, ``second_group``,
        ``second_group_fraction``; ``outlier_score`` and ``neighbour_1``...;
        statmorph's quantities and flags).

    Raises
    ------
    EmptyCatalogError
        No galaxies.
    CatalogError
        Repeated ids, or no galaxy could be read.
    MissingColumnError
        One of ``columns`` is not in the catalog (checked before any work).
    ModelError
        A model folder is unusable, or the images do not preprocess to the
        classifier's input shape (checked on the first galaxy, before any work).
    OutputError
        ``folder`` holds a catalog of other input or settings, or other files.
    ConfigError
        Bad settings, no stage to run, an unknown stage in the config, or
        the scheduler does not answer.
    """
    folder = Path(folder)
    config, skipped = resolve_config(config, classifier=classifier, target_accuracy=target_accuracy,
                                     min_confidence=min_confidence, engine=engine, clusterer=clusterer,
                                     encoder=encoder, morphometry=morphometry, columns=columns,
                                     shard_size=shard_size)
    collection = data if isinstance(data, GalaxyCollection) else GalaxyCollection.open(data)
    manifest = build_manifest(collection, config.shard_size)
    carried_columns(collection.subset([0]), config.columns)
    settings = {"input": {"fingerprint": manifest.fingerprint, "count": manifest.count},
                "shard_size": config.shard_size, "config": config.to_dict(), "models": {}}
    plan = {"columns": tuple(config.columns)}
    if config.classification is not None:
        stage = config.classification
        model = load_model(stage.model)
        plan.update(classifier=str(model.folder.resolve()), batch_size=stage.batch_size, engine=stage.engine,
                    thresholds=triage_thresholds(model, stage.target_accuracy, stage.min_confidence))
        check_labels(collection, model)
        _check_first_galaxy(model, collection)
        settings["models"]["classifier"] = _identity(model.folder, [MODEL_CONFIG_FILE])
    if config.embeddings is not None:
        stage = config.embeddings
        bands = stage.bands or _bands(collection)
        plan["encoder"] = (stage.encoder, stage.weights, bands, stage.batch_size)
        cached_encoder(*plan["encoder"])  # an unusable encoder fails here, before any cluster starts
        if Path(stage.encoder).is_dir():
            settings["models"]["encoder"] = _identity(stage.encoder, [MODEL_CONFIG_FILE])
    if config.morphometry is not None:
        plan["morphometry"] = config.morphometry.options()
    if config.clustering is not None and config.clustering.model is not None:
        plan["clustering"] = str(Path(config.clustering.model).resolve())
        cached_clustering(plan["clustering"])
        settings["models"]["clustering"] = _identity(config.clustering.model, _CLUSTERING_FILES)
    elif config.clustering is not None:
        from ..clustering import ClusterConfig

        ClusterConfig.from_dict(config.clustering.options)
    _prepare_folder(folder, settings, overwrite)
    with atomic_path(folder / CONFIG_FILE) as tmp:
        tmp.write_text(json.dumps({"settings": settings, "input": collection.name,
                                   "versions": package_versions(_RECORDED_PACKAGES)}, indent=2))
    manifest.write(folder)
    if config.clustering is not None and config.clustering.model is None:
        plan["clustering"] = str(_fit_clustering(collection, folder, config.clustering).resolve())
    todo = [shard for shard in manifest.shards if not part_path(folder, shard.shard_id).is_file()]
    if todo:
        _run_shards(collection, todo, folder, ShardPlan(**plan), workers, scheduler, progress)
    catalog, failures = merge_parts(folder, manifest)
    write_table(folder / FAILURES_FILE, failures)
    if catalog is None:
        raise CatalogError(f"{collection.name}: none of its {manifest.count} galaxies could be read "
                           f"(see {folder / FAILURES_FILE})")
    if config.embeddings is not None:
        catalog = _embedding_columns(catalog, folder, manifest, config.embeddings, plan["encoder"], collection.name)
    write_table(folder / CATALOG_FILE, catalog)
    if fits:
        write_table(folder / "catalog.fits", _fits_ready(catalog))
    return CatalogResult(catalog, failures, len(todo), len(manifest.shards) - len(todo), folder, skipped)


def _fit_clustering(collection: GalaxyCollection, folder: Path, stage) -> Path:
    """Fit the voting clustering on a seeded random sample drawn across all shards; return its folder.

    A sample rather than the first rows, so that a catalog sorted by sky
    position or magnitude does not give groups of one corner of it.  The fit
    is cached in ``DIR/clustering-fit`` and resumed like any clustering run.
    """
    from ..clustering import ClusterConfig, run_cluster_pipeline
    from ..clustering.pipeline import FITTED_FOLDER

    size = min(stage.fit_sample, len(collection))
    rows = np.sort(np.random.default_rng(stage.seed).choice(len(collection), size=size, replace=False))
    run = folder / FIT_FOLDER
    run_cluster_pipeline(collection.subset(rows), run, ClusterConfig.from_dict(stage.options))
    return run / FITTED_FOLDER


def _embedding_columns(catalog, folder: Path, manifest: Manifest, stage, encoder_spec: tuple, source: str):
    """Gather the shards' vectors, index them with faiss, and add neighbours and outlier scores.

    The vectors go to ``embeddings.parquet`` + ``.npy`` in catalog order and
    the index beside them (IVF trained on a random sample above 50,000
    galaxies, exact below); each galaxy's ``k`` nearest other galaxies and
    its cosine distance to the farthest of them (the ``knn`` detector of
    :mod:`tuningfork.embeddings.outliers`) become catalog columns.
    """
    from ..embeddings import SimilarityIndex, load_embeddings
    from ..embeddings.search import index_path_for
    from ..embeddings.store import EmbeddingWriter

    vectors = [np.load(path, mmap_mode="r") for path in
               (vectors_path(folder, shard.shard_id) for shard in manifest.shards) if path.is_file()]
    dim = vectors[0].shape[1]
    metadata = {**cached_encoder(*encoder_spec).describe(), "source": source}
    path = folder / EMBEDDINGS_FILE
    ids = [str(name) for name in catalog["id"]]
    with EmbeddingWriter(path, len(ids), dim, metadata) as writer:
        start = 0
        for part in vectors:
            writer.write(ids[start:start + len(part)], part)
            start += len(part)
    embeddings = load_embeddings(path)
    index = SimilarityIndex.build(embeddings, kind=stage.index, train_size=stage.train_sample, seed=stage.seed,
                                  recall_queries=200 if len(ids) <= 1_000_000 else 0)
    index.save(index_path_for(path))
    k = min(stage.neighbours, len(ids) - 1)
    neighbours = np.full((len(ids), k), -1, dtype=np.int64)
    distances = np.full((len(ids), k), np.nan, dtype=np.float32)
    for start in range(0, len(ids), _SEARCH_CHUNK):
        stop = min(start + _SEARCH_CHUNK, len(ids))
        found, rows = index.search(embeddings.vectors[start:stop], k + 1)
        # Each galaxy is its own nearest neighbour; drop it (or, if a twin
        # displaced it, the farthest hit).
        own = rows == np.arange(start, stop)[:, None]
        own[~own.any(axis=1), -1] = True
        neighbours[start:stop] = rows[~own].reshape(stop - start, k)
        distances[start:stop] = found[~own].reshape(stop - start, k)
    names = np.append(np.asarray(ids, dtype=object), "")
    catalog = catalog.copy(copy_data=False)
    catalog["outlier_score"] = distances[:, -1] if k else np.full(len(ids), np.nan, dtype=np.float32)
    for column in range(k):
        catalog[f"neighbour_{column + 1}"] = names[neighbours[:, column]].astype(str)
    return catalog


def _bands(collection: GalaxyCollection) -> int:
    """Bands of the first galaxy that reads (a corrupt first file is left to its shard's failures)."""
    for row in range(min(len(collection), 100)):
        try:
            return collection[row].image.shape[0]
        except InputFileError:
            continue
    raise CatalogError(f"{collection.name}: none of its first 100 galaxies could be read")


def _fits_ready(catalog):
    """The catalog with its object columns as strings (FITS has no object type)."""
    table = catalog.copy(copy_data=False)
    for name in table.colnames:
        if table[name].dtype == object:
            table[name] = table[name].astype(str)
    return table


def _check_first_galaxy(model, collection: GalaxyCollection) -> None:
    """Refuse data the model cannot take (wrong bands or size) before any cluster starts.

    Every task would raise the same error, after its retries; a galaxy that
    does not read is left to its shard's failures table instead.
    """
    try:
        model_images(model, collection.subset([0]), 1)
    except InputFileError:
        pass


def _run_shards(collection, shards, folder, plan: ShardPlan, workers, scheduler, progress) -> None:
    """Submit one task per shard and wait for all, advancing the progress bar by galaxies."""
    from distributed import as_completed

    with open_client(workers, scheduler) as client:
        plugin = ModelPlugin([plan.classifier] if plan.classifier else [],
                             [plan.clustering] if plan.clustering else [], [plan.encoder] if plan.encoder else [],
                             engine=plan.engine)
        # Named by what it loads: a second run with other models registers (and loads) its own.
        loads = json.dumps([plan.classifier, plan.clustering, plan.encoder, plan.engine]).encode()
        client.register_plugin(plugin, name=f"tuningfork-models-{hashlib.sha256(loads).hexdigest()[:16]}")
        # The key is the shard id, so resubmitting a shard (a retry, a second
        # client) names the same task instead of duplicating it.
        futures = {
            client.submit(run_shard, collection.subset(slice(shard.start, shard.stop)), shard.shard_id,
                          str(folder.resolve()), plan, key=f"shard-{shard.shard_id}", retries=RETRIES): shard
            for shard in shards
        }
        with progress_bar(sum(len(shard) for shard in shards), progress, "cataloguing") as advance:
            for future in as_completed(futures):
                future.result()
                # Dropping the finished future lets its worker forget the task and its arguments.
                advance(len(futures.pop(future)))
