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

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data import GalaxyCollection, check_output, write_table
from ..data.batches import progress_bar
from ..data.writers import atomic_path
from ..errors import CatalogError, ConfigError, InputFileError, OutputError
from ..models import open_model
from ..models.folder import CONFIG_FILE as MODEL_CONFIG_FILE
from ..models.folder import package_versions
from ..training.predict import (
    carried_columns,
    check_engine,
    check_labels,
    model_images,
    resolve_engine,
    triage_thresholds,
)
from .config import STAGES, PipelineConfig
from .local import cached_clustering, cached_encoder, check_workers, one_core
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
#: The classifier's network exported for ONNX Runtime, when its folder holds none.
CLASSIFIER_GRAPH = "classifier.onnx"
#: The ``clusterer`` that asks for a clustering fitted on a sample of the input.
FIT = "fit"
#: Files whose checksums identify a fitted clustering folder.
_CLUSTERING_FILES = ("config.json", "pca.npz", "voting.json", "voting.npz", "snr_trend.npz")
#: Galaxies whose neighbours are searched at a time.
_SEARCH_CHUNK = 50_000
#: Rows per row group of catalog.parquet: parts are gathered up to this before each write.
_ROW_GROUP = 65_536
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
    rows : int
        Galaxies in the catalog.
    failures : astropy.table.Table
        ``id``, ``file``, ``error`` of each galaxy that could not be read.
    shards_run, shards_skipped : int
        Shards computed now, and shards a previous run had finished.
    folder : Path
    skipped : dict of str to str
        Each stage that did not run, and why.
    """

    rows: int
    failures: object
    shards_run: int
    shards_skipped: int
    folder: Path
    skipped: dict = field(default_factory=dict)

    @functools.cached_property
    def catalog(self):
        """The merged catalog (``DIR/catalog.parquet``), read into memory on first use."""
        from astropy.table import Table

        return Table.read(self.folder / CATALOG_FILE)


@dataclass(frozen=True)
class ExtraColumns:
    """Columns computed over the whole catalog, added to each part as it is merged.

    Attributes
    ----------
    values : callable
        ``values(start, stop)`` gives the columns (name to array) of catalog
        rows ``start:stop``.
    text_lengths : dict of str to int
        Longest value of each text column, which astropy records in the file.
    """

    values: Callable[[int, int], dict[str, np.ndarray]]
    text_lengths: dict[str, int] = field(default_factory=dict)


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


def merge_parts(folder: str | Path, manifest: Manifest, extra: ExtraColumns | None = None):
    """Stream the parts of every shard, in manifest order, into ``DIR/catalog.parquet``; merge the failures.

    The parts are read one row group at a time, so the client's memory does
    not grow with the catalog; only what must be global is gathered first:
    the expert priorities (8 bytes per galaxy), from which ``expert_rank``
    is ranked across all shards.

    Parameters
    ----------
    folder : str or Path
        The catalog folder.
    manifest : Manifest
    extra : ExtraColumns, optional
        Columns of the whole catalog to add (the embedding stage's).

    Returns
    -------
    rows : int
        Galaxies written; 0 when none could be read (then no catalog is written).
    failures : astropy.table.Table

    Raises
    ------
    CatalogError
        A part's columns do not match the first part's (parts of another run).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq
    from astropy.table import Table, vstack

    folder = Path(folder)
    failed = [failures_path(folder, shard.shard_id) for shard in manifest.shards]
    failed = [Table.read(path) for path in failed if path.is_file()]
    failures = (vstack(failed, metadata_conflicts="silent") if failed
                else Table(names=("id", "file", "error"), dtype=(str, str, str)))
    # A shard whose every galaxy failed has an empty part, whose columns have
    # no string type to agree with the others'.
    parts = [path for path in (part_path(folder, shard.shard_id) for shard in manifest.shards)
             if pq.read_metadata(path).num_rows]
    if not parts:
        return 0, failures
    schemas = [pq.read_schema(path) for path in parts]
    names = _merged_names(parts, schemas)
    ranks = None
    if "expert_priority" in schemas[0].names:
        ranks = expert_ranks(np.concatenate([pq.read_table(path, columns=["expert_priority"])[0].to_numpy()
                                             for path in parts]))
    writer, pending, start = None, [], 0
    with atomic_path(folder / CATALOG_FILE) as tmp:
        try:
            for path in parts:
                table = pq.read_table(path).replace_schema_metadata(None)
                for name in names:
                    if name not in table.column_names:  # a mask column: this part had no masked value
                        table = table.append_column(name, pa.array(np.zeros(table.num_rows, dtype=bool)))
                table = table.select(names)
                stop = start + table.num_rows
                if ranks is not None:
                    table = table.set_column(table.schema.get_field_index("expert_rank"), "expert_rank",
                                             pa.array(ranks[start:stop]))
                for name, values in (extra.values(start, stop) if extra else {}).items():
                    table = table.append_column(name, pa.array(values))
                if writer is None:
                    schema = table.schema.with_metadata(
                        _merged_metadata(schemas, table.schema, extra.text_lengths if extra else {}))
                    writer = pq.ParquetWriter(tmp, schema)
                try:
                    pending.append(table.cast(schema))
                except (ValueError, TypeError) as error:
                    raise CatalogError(f"{path}: its columns do not match the first part's ({error})") from None
                start = stop
                if sum(len(table) for table in pending) >= _ROW_GROUP:
                    writer.write_table(pa.concat_tables(pending))
                    pending = []
            if pending:
                writer.write_table(pa.concat_tables(pending))
        finally:
            if writer is not None:
                writer.close()
    return start, failures


#: Suffix of the column in which astropy stores a masked column's mask, in a part with masked values.
_MASK = ".mask"


def _merged_names(parts: list[Path], schemas) -> list[str]:
    """The columns of the merged catalog: the first part's, and the mask columns any part has.

    astropy writes a masked column's mask only where some value is masked,
    so parts of one run differ by mask columns; any other difference means
    parts of different runs.
    """
    names = list(schemas[0].names)
    for schema in schemas[1:]:
        for name in schema.names:
            if name not in names and name.endswith(_MASK) and name[:-len(_MASK)] in names:
                names.insert(names.index(name[:-len(_MASK)]) + 1, name)
    for path, schema in zip(parts, schemas):
        if set(schema.names) - set(names) or any(not name.endswith(_MASK) for name in set(names) - set(schema.names)):
            raise CatalogError(f"{path}: its columns do not match the first part's "
                               f"({', '.join(schema.names)} against {', '.join(schemas[0].names)})")
    return names


def _merged_metadata(schemas, merged, text_lengths: dict[str, int]) -> dict[bytes, bytes]:
    """astropy's file metadata for the merged catalog, true of every part and of the added columns.

    astropy reads a text column as fixed-width strings of the recorded
    length, so each must be the longest of the whole catalog; it describes
    every column (``merged`` is the merged schema, added columns included)
    in a serialised header, where a masked column names its mask column if
    any part has one.
    """
    from astropy.table import Column, meta

    prefix = b"table::len::"
    lengths: dict[bytes, int] = {}
    headers = {}
    for schema in schemas:
        for key, value in (schema.metadata or {}).items():
            if key.startswith(prefix):
                lengths[key] = max(int(value), lengths.get(key, 0))
        if tuple(schema.names) not in headers and b"table_meta_yaml" in (schema.metadata or {}):
            headers[tuple(schema.names)] = meta.get_header_from_yaml(
                schema.metadata[b"table_meta_yaml"].decode().split("\n"))
    for name, length in text_lengths.items():
        lengths[prefix + name.encode()] = length
    described, table_meta, serialized = {}, {}, {}
    for header in headers.values():
        described.update({column["name"]: column for column in header["datatype"]})
        for key, value in header.get("meta", {}).items():
            if key != "__serialized_columns__":
                table_meta[key] = value
        for name, entry in header.get("meta", {}).get("__serialized_columns__", {}).items():
            if "mask" in entry or name not in serialized:
                serialized[name] = entry
    if serialized:
        table_meta["__serialized_columns__"] = serialized
    columns = []
    for column in merged:
        entry = described.get(column.name, {})
        dtype = "U1" if column.type == "string" else column.type.to_pandas_dtype()
        columns.append(Column(np.zeros(0, dtype=dtype), name=column.name, unit=entry.get("unit"),
                              description=entry.get("description"), format=entry.get("format"),
                              meta=entry.get("meta")))
    metadata = {key: str(value).encode() for key, value in lengths.items()}
    metadata[b"table_meta_yaml"] = "\n".join(meta.get_yaml_from_header({"cols": columns, "meta": table_meta})).encode()
    return metadata


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
    if config.classification is not None:
        check_engine(config.classification.engine)
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
    engine : {"auto", "torch", "onnx"}, optional
        Runs the classifier's network (see
        :class:`~tuningfork.pipeline.config.ClassificationStage`); the
        config's, else ``auto`` (ONNX Runtime when the model folder holds
        its exported graph).
    columns : sequence of str
        Catalog columns to carry (``file``, ``ra``, ``dec`` always are).
    shard_size : int, optional
        Galaxies per shard (and per Parquet part); the config's, else
        :data:`~tuningfork.pipeline.manifest.SHARD_SIZE`.
    workers : int, optional
        Processes of the local cluster; one per core by default.  One
        runs the shards in this process, without Dask (:func:`~.local.one_core`).
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
    if workers is not None and scheduler is not None:
        raise ConfigError("give either a number of workers or a scheduler address, not both")
    if scheduler is None:
        check_workers(workers)
    config, skipped = resolve_config(config, classifier=classifier, target_accuracy=target_accuracy,
                                     min_confidence=min_confidence, engine=engine, clusterer=clusterer,
                                     encoder=encoder, morphometry=morphometry, columns=columns,
                                     shard_size=shard_size)
    collection = data if isinstance(data, GalaxyCollection) else GalaxyCollection.open(data)
    if config.classification is not None:
        model = open_model(config.classification.model)
        # Resolved before the settings are recorded, so that resuming compares the engine that ran.
        config.classification.engine = resolve_engine(config.classification.engine, model)
    manifest = build_manifest(collection, config.shard_size)
    carried_columns(collection.subset([0]), config.columns)
    settings = {"input": {"fingerprint": manifest.fingerprint, "count": manifest.count},
                "shard_size": config.shard_size, "config": config.to_dict(), "models": {}}
    plan = {"columns": tuple(config.columns)}
    if config.classification is not None:
        stage = config.classification
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
    if plan.get("engine") == "onnx":
        from ..models.export import cached_graph

        # Exported here once (when the model folder has no graph of its
        # weights) so that no worker needs torch to run it.
        plan["graph"] = str(cached_graph(model, folder / CLASSIFIER_GRAPH).resolve())
    if config.clustering is not None and config.clustering.model is None:
        plan["clustering"] = str(_fit_clustering(collection, folder, config.clustering).resolve())
    todo = [shard for shard in manifest.shards if not part_path(folder, shard.shard_id).is_file()]
    if todo:
        _run_shards(collection, todo, folder, ShardPlan(**plan), workers, scheduler, progress)
    extra = None
    if config.embeddings is not None:
        extra = _embedding_columns(folder, manifest, config.embeddings, plan["encoder"], collection.name)
    rows, failures = merge_parts(folder, manifest, extra)
    write_table(folder / FAILURES_FILE, failures)
    if not rows:
        raise CatalogError(f"{collection.name}: none of its {manifest.count} galaxies could be read "
                           f"(see {folder / FAILURES_FILE})")
    result = CatalogResult(rows, failures, len(todo), len(manifest.shards) - len(todo), folder, skipped)
    if fits:
        write_table(folder / "catalog.fits", result.catalog)
    return result


def _fit_clustering(collection: GalaxyCollection, folder: Path, stage) -> Path:
    """Fit the voting clustering on a seeded random sample drawn across all shards; return its folder.

    A sample rather than the first rows, so that a catalog sorted by sky
    position or magnitude does not give groups of one corner of it.  The fit
    is cached in ``DIR/clustering-fit`` and resumed like any clustering run.
    A sampled galaxy that does not read (a corrupt file, or a missing one
    when files were not checked) is left out of the fit; its shard records
    it in the failures table like any other.
    """
    from ..clustering import ClusterConfig, run_cluster_pipeline
    from ..clustering.pipeline import FITTED_FOLDER

    size = min(stage.fit_sample, len(collection))
    rows = np.sort(np.random.default_rng(stage.seed).choice(len(collection), size=size, replace=False))
    rows = [row for row in rows if _readable(collection, row)]
    if not rows:
        raise CatalogError(f"{collection.name}: none of the {size} galaxies sampled to fit the clustering "
                           "could be read")
    run = folder / FIT_FOLDER
    run_cluster_pipeline(collection.subset(rows), run, ClusterConfig.from_dict(stage.options))
    return run / FITTED_FOLDER


def _embedding_columns(folder: Path, manifest: Manifest, stage, encoder_spec: tuple, source: str) -> ExtraColumns | None:
    """Gather the shards' vectors, index them with faiss, and give each galaxy's neighbours and outlier score.

    The vectors go to ``embeddings.parquet`` + ``.npy`` in catalog order and
    the index beside them (IVF trained on a random sample above 50,000
    galaxies, exact below); each galaxy's ``k`` nearest other galaxies and
    its cosine distance to the farthest of them (the ``knn`` detector of
    :mod:`tuningfork.embeddings.outliers`) become catalog columns.  None
    when no galaxy could be read.
    """
    import pyarrow.parquet as pq

    from ..embeddings import SimilarityIndex, load_embeddings
    from ..embeddings.search import index_path_for
    from ..embeddings.store import EmbeddingWriter

    done = [shard for shard in manifest.shards if vectors_path(folder, shard.shard_id).is_file()]
    vectors = [np.load(vectors_path(folder, shard.shard_id), mmap_mode="r") for shard in done]
    if not vectors:
        return None
    # The ids of the parts, in catalog order: the rows the vectors belong to.
    ids = [str(name) for shard in done for name in pq.read_table(part_path(folder, shard.shard_id),
                                                                  columns=["id"])[0].to_pylist()]
    dim = vectors[0].shape[1]
    metadata = {**cached_encoder(*encoder_spec).describe(), "source": source}
    path = folder / EMBEDDINGS_FILE
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
    scores = distances[:, -1] if k else np.full(len(ids), np.nan, dtype=np.float32)

    def values(start: int, stop: int) -> dict[str, np.ndarray]:
        return {"outlier_score": scores[start:stop],
                **{f"neighbour_{column + 1}": names[neighbours[start:stop, column]].astype(str)
                   for column in range(k)}}

    longest = max(len(name) for name in ids)
    return ExtraColumns(values, {f"neighbour_{column + 1}": longest for column in range(k)})


def _readable(collection: GalaxyCollection, row: int) -> bool:
    """Whether galaxy ``row`` reads (an unreadable one is left to its shard's failures)."""
    try:
        collection[row]
    except InputFileError:
        return False
    return True


def _bands(collection: GalaxyCollection) -> int:
    """Bands of the first galaxy that reads."""
    for row in range(min(len(collection), 100)):
        if _readable(collection, row):
            return collection[row].image.shape[0]
    raise CatalogError(f"{collection.name}: none of its first 100 galaxies could be read")


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
    """Run every shard, on Dask or (one local worker) here, advancing the progress bar by galaxies."""
    folders = ([plan.classifier] if plan.classifier else [], [plan.clustering] if plan.clustering else [],
               [plan.encoder] if plan.encoder else [])
    with progress_bar(sum(len(shard) for shard in shards), progress, "cataloguing") as advance:
        if scheduler is None and check_workers(workers) == 1:
            with one_core(*folders, engine=plan.engine, graph=plan.graph):
                for shard in shards:
                    run_shard(collection.subset(slice(shard.start, shard.stop)), shard.shard_id,
                              str(folder.resolve()), plan)
                    advance(len(shard))
            return
        _submit_shards(collection, shards, folder, plan, folders, workers, scheduler, advance)


def _submit_shards(collection, shards, folder, plan: ShardPlan, folders, workers, scheduler, advance) -> None:
    """Submit one task per shard to a Dask cluster and wait for all."""
    from distributed import as_completed

    from .cluster import ModelPlugin, open_client

    with open_client(workers, scheduler) as client:
        plugin = ModelPlugin(*folders, engine=plan.engine, graph=plan.graph)
        # Named by what it loads: a second run with other models registers (and loads) its own.
        loads = json.dumps([plan.classifier, plan.clustering, plan.encoder, plan.engine, plan.graph]).encode()
        client.register_plugin(plugin, name=f"tuningfork-models-{hashlib.sha256(loads).hexdigest()[:16]}")
        # The key is the shard id, so resubmitting a shard (a retry, a second
        # client) names the same task instead of duplicating it.
        futures = {
            client.submit(run_shard, collection.subset(slice(shard.start, shard.stop)), shard.shard_id,
                          str(folder.resolve()), plan, key=f"shard-{shard.shard_id}", retries=RETRIES): shard
            for shard in shards
        }
        for future in as_completed(futures):
            future.result()
            # Dropping the finished future lets its worker forget the task and its arguments.
            advance(len(futures.pop(future)))
