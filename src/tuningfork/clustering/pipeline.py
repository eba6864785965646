"""The unsupervised morphology pipeline, stage by stage, resumable.

``denoise`` (train the autoencoder) -> ``encode`` (preprocess, denoise,
polar step, encoder) -> ``pca`` -> ``vote`` (bagging voting clustering) ->
optional ``sweep`` (choice of K), ``morphometry`` (statmorph) and
``evaluate`` (against labels, with two k-means baselines) -> ``plots``.

Each stage writes its output atomically into the output folder and records
a fingerprint of everything it depends on (settings, input ids, upstream
fingerprints) in ``stages.json``.  A rerun skips every stage whose output
exists with the same fingerprint, so an interrupted run resumes where it
stopped and changing, say, K reruns only the vote and what follows it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, MissingFileError
from ..models import load_encoder, load_model, read_config
from ..models.encoding import AutoencoderEncoder
from ..models.nets.autoencoder import ARCHITECTURE as AUTOENCODER
from ..models.nets.descriptors import MORPHOLOGY_ENCODER, MorphologyEncoder
from .config import OWN_AUTOENCODER, ClusterConfig
from .reduction import PCAProjection
from .trend import SnrTrend
from .voting import VoteResult, VotingClustering, check_n_clusters

# The raw-pixel baseline: 32 x 32 block averages, 50 principal components.
# Pixels are mostly sky noise, so a variance fraction would keep hundreds of
# noise components (minutes of SVD at 10^4 galaxies) that only blur k-means.
RAW_PIXEL_VALUES = 1024
RAW_PIXEL_COMPONENTS = 50


#: Folder of a pipeline run that holds its fitted clustering.
FITTED_FOLDER = "clustering"
# Written last by FittedClustering.save, so that its presence marks a
# complete folder.
_FITTED_SETTINGS = "config.json"
_FITTED_FILES = ("pca.npz", "voting.json", "voting.npz", _FITTED_SETTINGS)
_SNR_TREND = "snr_trend.npz"


def _fitted_files(config: ClusterConfig) -> tuple[str, ...]:
    """The files of a fitted clustering folder; the S/N trend only for the descriptors."""
    return (_SNR_TREND, *_FITTED_FILES) if config.encoder == MORPHOLOGY_ENCODER else _FITTED_FILES


@dataclass
class FittedClustering:
    """Everything that assigns new galaxies to the groups of a pipeline run.

    Saved by :func:`run_cluster_pipeline` as ``clustering/`` in its output
    folder; :func:`assign_groups` reads it back.

    Attributes
    ----------
    config : ClusterConfig
        Settings of the run: how images became features.
    pca : PCAProjection
        The projection fitted on the run's features.
    voting : VotingClustering
        The fitted members and their alignment.
    denoiser : Path or None
        Denoiser model folder, when the run denoised.
    trend : SnrTrend or None
        The S/N trend of the ``"morphology"`` encoder's descriptors, fitted
        on the run's galaxies.
    """

    config: ClusterConfig
    pca: PCAProjection
    voting: VotingClustering
    denoiser: Path | None = None
    trend: SnrTrend | None = None

    def save(self, folder: str | Path) -> Path:
        """Write ``config.json``, ``pca.npz``, ``voting.*``, ``snr_trend.npz`` and ``denoiser/``.

        Parameters
        ----------
        folder : str or Path
            Created if needed; every file is written atomically.

        Returns
        -------
        Path
            The folder.
        """
        from ..data.writers import atomic_path

        folder = Path(folder)
        self.voting.save(folder)
        self.pca.save(folder / "pca.npz")
        if self.trend is not None:
            self.trend.save(folder / _SNR_TREND)
        copy = folder / "denoiser"
        if self.denoiser is not None and Path(self.denoiser).resolve() != copy.resolve():
            # A copy, so that the folder assigns galaxies after the run's own
            # outputs are moved or deleted.
            shutil.copytree(self.denoiser, copy, dirs_exist_ok=True)
        with atomic_path(folder / _FITTED_SETTINGS) as tmp:
            tmp.write_text(self.config.to_json())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> FittedClustering:
        """Read a folder written by :meth:`save`.

        Parameters
        ----------
        folder : str or Path
            E.g. ``clustering/`` in the output folder of a pipeline run.

        Returns
        -------
        FittedClustering

        Raises
        ------
        MissingFileError, CorruptFileError, ConfigError
        """
        from ..errors import CorruptFileError

        folder = Path(folder)
        settings = folder / _FITTED_SETTINGS
        if not settings.is_file():
            raise MissingFileError(settings, "fitted clustering settings")
        config = ClusterConfig.from_json(settings.read_text())
        pca = PCAProjection.load(folder / "pca.npz")
        voting = VotingClustering.load(folder)
        if voting.n_features_in_ != pca.n_components:
            raise CorruptFileError(
                folder / "voting.npz",
                f"fitted on {voting.n_features_in_} features, the PCA keeps {pca.n_components}",
            )
        denoiser = None
        if config.denoise:
            denoiser = folder / "denoiser"
            if not denoiser.is_dir():
                raise MissingFileError(denoiser, "denoiser model folder")
        trend = SnrTrend.load(folder / _SNR_TREND) if _SNR_TREND in _fitted_files(config) else None
        return cls(config, pca, voting, denoiser, trend)

    def assign(self, collection) -> VoteResult:
        """Vote new galaxies into the fitted groups, without caching anything on disk.

        The per-shard step of the survey catalog; :func:`assign_groups` is the
        same with every stage cached in a folder.

        Parameters
        ----------
        collection : GalaxyCollection
            The galaxies (raw images; this clustering's preprocessing is applied).

        Returns
        -------
        VoteResult
        """
        from ..preprocessing import Preprocessor

        preprocessor = Preprocessor(_effective_preprocess(self.config))
        features, _ = _encode(collection, preprocessor, self.config, self.denoiser, self.trend)
        return self.voting.predict(self.pca.transform(features, name=collection.name), name=collection.name)


@dataclass
class ClusterResult:
    """What :func:`run_cluster_pipeline` produced.

    Attributes
    ----------
    out_dir : Path
        The output folder.
    groups : astropy.table.Table
        The group catalog (``groups.csv``).
    scores : dict or None
        Scores against labels (``scores.json``), when a label column was given.
    ran, skipped : list of str
        Stages computed in this call, and stages reused from an earlier run.
    files : dict
        Stage outputs by name.
    seconds : dict
        Wall time of each stage computed in this call, in seconds.
    cpu_seconds : dict
        CPU time of this process (all its threads) in each stage, in
        seconds: the work done, which unlike wall time does not grow when
        other jobs share the machine.
    """

    out_dir: Path
    groups: Any
    scores: dict | None
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    files: dict[str, Path] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    cpu_seconds: dict[str, float] = field(default_factory=dict)


def _fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[
        :16
    ]


class _StageLog:
    """``stages.json``: the fingerprint of every finished stage."""

    FILE = "stages.json"

    def __init__(self, out_dir: Path, force: bool):
        self.path = out_dir / self.FILE
        self.done = {} if force or not self.path.is_file() else json.loads(self.path.read_text())
        self.ran: list[str] = []
        self.skipped: list[str] = []
        self.seconds: dict[str, float] = {}
        self.cpu_seconds: dict[str, float] = {}
        self._started = 0.0
        self._cpu_started = 0.0

    def fresh(self, stage: str, fingerprint: str, outputs: list[Path]) -> bool:
        reusable = self.done.get(stage) == fingerprint and all(p.exists() for p in outputs)
        if reusable:
            self.skipped.append(stage)
        self._started = time.perf_counter()
        self._cpu_started = time.process_time()
        return reusable

    def record(self, stage: str, fingerprint: str) -> None:
        from ..data.writers import atomic_path

        self.seconds[stage] = time.perf_counter() - self._started
        self.cpu_seconds[stage] = time.process_time() - self._cpu_started
        self.done[stage] = fingerprint
        self.ran.append(stage)
        with atomic_path(self.path) as tmp:
            tmp.write_text(json.dumps(self.done, indent=2, sort_keys=True))


def check_run_folder(out_dir: str | Path, overwrite: bool = False) -> Path:
    """Refuse, before any work, a run folder that cannot be written or holds something else.

    Parameters
    ----------
    out_dir : str or Path
        The run folder.  One with ``stages.json`` is an earlier run, which a
        rerun resumes (``force`` recomputes it), so it is accepted.
    overwrite : bool
        Also accept a non-empty folder that is not a run.

    Returns
    -------
    Path

    Raises
    ------
    OutputExistsError, OutputError
        See :func:`tuningfork.data.writers.check_output`.
    """
    from ..data.writers import check_output

    out_dir = Path(out_dir)
    return check_output(out_dir, kind="folder", overwrite=overwrite or (out_dir / _StageLog.FILE).is_file())


def _weights_identity(path: str | None) -> dict | None:
    if path is None:
        return None
    weights = Path(path)
    stat = weights.stat() if weights.is_file() else None
    return {
        "path": str(weights.resolve()),
        "size": stat.st_size if stat else None,
        "mtime": stat.st_mtime if stat else None,
    }


def raw_pixel_features(
    collection, preprocess, batch_size: int = 64, max_values: int = 4096
) -> np.ndarray:
    """Preprocessed pixels, block-averaged to at most ``max_values`` per galaxy.

    The "k-means on PCA of raw pixels" baseline; block averaging keeps the
    matrix small enough for PCA on 10^4 galaxies and more.

    Parameters
    ----------
    collection : GalaxyCollection
        The galaxies.
    preprocess : callable
        Applied to each image (a Preprocessor).
    batch_size : int
        Galaxies read at a time.
    max_values : int
        Largest number of values per galaxy.

    Returns
    -------
    ndarray
        float32 (n_galaxies, values).
    """
    from skimage.measure import block_reduce

    rows = []
    for batch in collection.iter_batches(batch_size, preprocess=preprocess):
        images = batch.images
        factor = int(np.ceil(np.sqrt(images[0].size / max_values)))
        if factor > 1:
            images = block_reduce(images, (1, 1, factor, factor), np.mean)
        rows.append(images.reshape(images.shape[0], -1).astype(np.float32))
    return np.concatenate(rows)


def labels_where_present(collection, column: str) -> tuple[np.ndarray, np.ndarray]:
    """Class labels of a catalog column in which some rows may be blank.

    Clustering uses every galaxy; scoring uses those with a label (for
    example gz2-spirals labelled, gz2-unlabelled not).

    Parameters
    ----------
    collection : GalaxyCollection
        The galaxies.
    column : str
        Label column of its catalog.

    Returns
    -------
    labels : ndarray of str
        Label text of every galaxy ('' where absent).
    present : ndarray of bool
        True where a label is present.

    Raises
    ------
    MissingColumnError
        If the catalog has no such column.
    ConfigError
        If no galaxy has a label.
    """
    from ..errors import MissingColumnError

    catalog = collection.catalog
    if column not in catalog.colnames:
        raise MissingColumnError(collection.name, column, catalog.colnames)
    values = catalog[column]
    text = np.asarray(values.filled("") if hasattr(values, "filled") else values).astype(str)
    present = ~np.isin(np.char.strip(text), ["", "nan", "None", "--"])
    if not present.any():
        raise ConfigError(f"{collection.name}: label column '{column}' is empty")
    return np.where(present, text, ""), present


def kmeans_groups(features: np.ndarray, n_clusters: int, seed: int = 0) -> np.ndarray:
    """Plain k-means: the baseline that puts every galaxy in a group.

    Parameters
    ----------
    features : ndarray
        (n_galaxies, n_features).
    n_clusters : int
        K.
    seed : int
        Seed.

    Returns
    -------
    ndarray of int
    """
    from sklearn.cluster import KMeans

    return KMeans(n_clusters, n_init=3, random_state=seed).fit_predict(features)


def _open(source, label_column: str | None):
    from ..data import GalaxyCollection

    if isinstance(source, GalaxyCollection):
        return source
    return GalaxyCollection.open(source, label_column=label_column)


def run_cluster_pipeline(
    source,
    out_dir: str | Path,
    config: ClusterConfig | None = None,
    *,
    force: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> ClusterResult:
    """Run (or resume) the unsupervised morphology pipeline.

    Parameters
    ----------
    source : GalaxyCollection or str or Path
        The galaxies, or anything :meth:`GalaxyCollection.open` reads.
    out_dir : str or Path
        Output folder: ``denoiser/`` (model folder), ``features.parquet``,
        ``pca.npz``, ``reduced.parquet``, ``groups.csv``, ``clustering/``
        (the fitted clustering, for :func:`assign_groups`), optional
        ``sweep.csv``, ``morphometry.csv``, ``scores.json``, and ``plots/``.
    config : ClusterConfig, optional
        Settings; defaults to ``ClusterConfig()``.
    force : bool
        Recompute every stage.
    overwrite : bool
        Write into a non-empty ``out_dir`` that is not an earlier run (one
        with ``stages.json``, which is resumed); without it such a folder
        raises :class:`~tuningfork.errors.OutputExistsError` before any work.
    log : callable, optional
        Receives one line per stage (run or reused).

    Returns
    -------
    ClusterResult

    Raises
    ------
    ConfigError
        For K larger than the sample and other invalid settings.
    FeatureError
        When the encoder produced NaN features.
    MissingFileError, CorruptFileError, ModelError
        For an encoder folder that is not a usable model folder.
    """
    from ..data import read_catalog
    from ..data.writers import atomic_path, write_table
    from ..preprocessing import Preprocessor
    from .autoencoder import train_denoiser
    from .features import load_features, save_features
    from .reduction import fit_pca
    from .voting import read_groups, score_groups

    check_run_folder(out_dir, overwrite)
    config = config or ClusterConfig()
    say = log or (lambda message: None)
    collection = _open(source, config.label_column)
    ids = collection.ids
    check_n_clusters(config.n_clusters, len(ids), collection.name)
    for k in config.sweep_k:
        check_n_clusters(k, len(ids), collection.name)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = _StageLog(out, force)
    settings = config.to_dict()
    preprocess_config = _effective_preprocess(config)
    if config.polar and _is_model_folder(config.encoder):
        raise ConfigError(
            f"{config.encoder}: a model-folder encoder was trained on Cartesian images; "
            "set polar=False"
        )
    preprocess_settings = preprocess_config.to_dict()
    preprocessor = Preprocessor(preprocess_config)
    data_print = _fingerprint({"source": collection.name, "ids": ids})
    files = {
        "denoiser": out / "denoiser",
        "features": out / "features.parquet",
        "snr_trend": out / _SNR_TREND,
        "pca": out / "pca.npz",
        "reduced": out / "reduced.parquet",
        "groups": out / "groups.csv",
        "clustering": out / FITTED_FOLDER,
        "sweep": out / "sweep.csv",
        "morphometry": out / "morphometry.csv",
        "scores": out / "scores.json",
        "plots": out / "plots",
    }

    def pick(*names: str) -> dict:
        return {name: settings[name] for name in names}

    # The settings of the bagging vote, shared by the final clustering and the K sweep.
    voting_names = ("n_bootstrap", "models", "threshold", "max_fit_samples", "seed")

    def report(stage: str, reused: bool) -> None:
        say(f"{stage}: {'reused from an earlier run' if reused else 'done'}")

    # -- denoise
    denoise_print = None
    if config.denoise:
        denoise_print = _fingerprint(
            {
                "data": data_print,
                "preprocess": preprocess_settings,
                "skips": _denoiser_skips(config),
                **pick(
                    "denoise_epochs",
                    "denoise_channels",
                    "denoise_depth",
                    "denoise_max_train",
                    "seed",
                ),
            }
        )
        reused = stages.fresh("denoise", denoise_print, [files["denoiser"] / "weights.safetensors"])
        if not reused:
            train_denoiser(
                collection,
                files["denoiser"],
                preprocess=preprocess_config,
                max_images=config.denoise_max_train,
                seed=config.seed,
                epochs=config.denoise_epochs,
                base_channels=config.denoise_channels,
                depth=config.denoise_depth,
                skips=_denoiser_skips(config),
                overwrite=True,
            )
            stages.record("denoise", denoise_print)
        report("denoise", reused)

    # -- encode
    encode_print = _fingerprint(
        {
            "data": data_print,
            "preprocess": preprocess_settings,
            "denoise": denoise_print,
            "weights": _weights_identity(config.encoder_weights),
            **pick(
                "encoder", "input_size", "polar", "polar_radii", "polar_angles", "polar_extension"
            ),
            "snr_trend_degree": (
                config.snr_trend_degree if config.encoder == MORPHOLOGY_ENCODER else None
            ),
        }
    )
    describes = config.encoder == MORPHOLOGY_ENCODER
    encoded = [files["features"], files["snr_trend"]] if describes else [files["features"]]
    reused = stages.fresh("encode", encode_print, encoded)
    if not reused:
        features, trend = _encode(
            collection, preprocessor, config, files["denoiser"] if config.denoise else None
        )
        save_features(files["features"], ids, features)
        if trend is not None:
            trend.save(files["snr_trend"])
        stages.record("encode", encode_print)
    report("encode", reused)

    # -- pca
    pca_print = _fingerprint({"encode": encode_print, **pick("pca_components", "seed")})
    reused = stages.fresh("pca", pca_print, [files["pca"], files["reduced"]])
    if reused:
        _, reduced = load_features(files["reduced"])
    else:
        _, features = load_features(files["features"])
        projection = fit_pca(
            features, config.pca_components, seed=config.seed, name=str(files["features"])
        )
        reduced = projection.transform(features)
        projection.save(files["pca"])
        save_features(files["reduced"], ids, reduced)
        stages.record("pca", pca_print)
    report("pca", reused)

    # -- vote
    vote_print = _fingerprint(
        {
            "pca": pca_print,
            **pick("n_clusters", *voting_names),
        }
    )
    fitted_files = [files["clustering"] / name for name in _fitted_files(config)]
    reused = stages.fresh("vote", vote_print, [files["groups"], *fitted_files])
    if reused:
        groups = read_groups(files["groups"])
    else:
        voting = config.voting()
        vote = voting.fit_predict(reduced, name=str(files["reduced"]))
        groups = vote.to_table(ids)
        write_table(files["groups"], groups)
        FittedClustering(
            config,
            PCAProjection.load(files["pca"]),
            voting,
            files["denoiser"] if config.denoise else None,
            SnrTrend.load(files["snr_trend"]) if describes else None,
        ).save(files["clustering"])
        stages.record("vote", vote_print)
    report("vote", reused)
    group = _group_array(groups)
    classified = np.asarray(groups["classified"], dtype=bool)

    # -- sweep
    if config.sweep_k:
        from .plots import plot_sweep
        from .sweep import sweep_k

        sweep_print = _fingerprint(
            {
                "pca": pca_print,
                **pick("sweep_k", *voting_names),
            }
        )
        reused = stages.fresh("sweep", sweep_print, [files["sweep"]])
        if not reused:
            sweep = sweep_k(reduced, config.sweep_k, **pick(*voting_names))
            write_table(files["sweep"], sweep)
            plot_sweep(sweep, files["plots"] / "sweep.png")
            stages.record("sweep", sweep_print)
        report("sweep", reused)

    # -- morphometry
    morphometry = None
    morph_print = None
    if config.morphometry:
        from ..morphometry import morphometry_catalog

        morph_print = _fingerprint({"data": data_print, "quantities": "default"})
        reused = stages.fresh("morphometry", morph_print, [files["morphometry"]])
        if reused:
            morphometry = read_catalog(files["morphometry"])
        else:
            morphometry = morphometry_catalog(
                collection, n_workers=config.workers, output=files["morphometry"], overwrite=True
            )
            stages.record("morphometry", morph_print)
        report("morphometry", reused)

    # -- evaluate
    scores = None
    if config.label_column is not None:
        evaluate_print = _fingerprint(
            {
                "vote": vote_print,
                "preprocess": preprocess_settings,
                "raw_pixels": [RAW_PIXEL_VALUES, RAW_PIXEL_COMPONENTS],
                **pick("label_column"),
            }
        )
        reused = stages.fresh("evaluate", evaluate_print, [files["scores"]])
        if reused:
            scores = json.loads(files["scores"].read_text())
        else:
            labels, labelled = labels_where_present(collection, config.label_column)
            raw = raw_pixel_features(
                collection, preprocessor, config.batch_size, max_values=RAW_PIXEL_VALUES
            )
            components = min(RAW_PIXEL_COMPONENTS, *raw.shape)
            raw_reduced = fit_pca(raw, components, seed=config.seed).transform(raw)
            candidates = {
                "voting": (group, classified),
                "kmeans_features": (kmeans_groups(reduced, config.n_clusters, config.seed), None),
                "kmeans_raw_pixels": (
                    kmeans_groups(raw_reduced, config.n_clusters, config.seed),
                    None,
                ),
            }
            scores = {}
            for method, (assigned, assigned_mask) in candidates.items():
                mask = None if assigned_mask is None else assigned_mask[labelled]
                scores[method] = score_groups(assigned[labelled], labels[labelled], mask)
                scores[method]["n_labelled"] = int(labelled.sum())
            with atomic_path(files["scores"]) as tmp:
                tmp.write_text(json.dumps(scores, indent=2))
            stages.record("evaluate", evaluate_print)
        report("evaluate", reused)

    # -- plots
    plots_print = _fingerprint(
        {"vote": vote_print, "morphometry": morph_print, **pick("embedding_map")}
    )
    plot_files = [files["plots"] / name for name in ("groups.png", "embedding.png")]
    if morphometry is not None:
        plot_files.append(files["plots"] / "morphology_planes.png")
    reused = stages.fresh("plots", plots_print, plot_files)
    if not reused:
        _plot_all(
            collection,
            preprocessor,
            groups,
            group,
            classified,
            reduced,
            morphometry,
            plot_files,
            config,
        )
        stages.record("plots", plots_print)
    report("plots", reused)

    return ClusterResult(
        out, groups, scores, stages.ran, stages.skipped, files, stages.seconds, stages.cpu_seconds
    )


def assign_groups(
    source,
    model: str | Path,
    out_dir: str | Path,
    *,
    label_column: str | None = None,
    force: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
) -> ClusterResult:
    """Put galaxies in the groups of a clustering fitted on other galaxies.

    The galaxies are preprocessed, denoised and encoded with the settings of
    the fitted run, projected with its PCA, and its voting members vote
    (:meth:`VotingClustering.predict`).  Stages are cached in ``out_dir``
    as in :func:`run_cluster_pipeline`.  The ``"morphology"`` encoder's
    descriptors lose the S/N trend fitted on the run's galaxies, so that a
    few galaxies land where the same galaxies fitted would.

    Parameters
    ----------
    source : GalaxyCollection or str or Path
        The galaxies to assign.
    model : str or Path
        A :class:`FittedClustering` folder, e.g. ``clustering/`` in the
        output folder of :func:`run_cluster_pipeline`.
    out_dir : str or Path
        Output folder: ``features.parquet``, ``reduced.parquet``,
        ``groups.csv``, optional ``scores.json`` and ``plots/``.
    label_column : str, optional
        Catalog column of known classes, to score the groups.
    force, overwrite, log
        See :func:`run_cluster_pipeline`.

    Returns
    -------
    ClusterResult
        ``scores`` holds ``"voting"`` only: the k-means baselines would be
        fitted on the assigned galaxies themselves.

    Raises
    ------
    MissingFileError, CorruptFileError, ConfigError
        For a folder that is not a fitted clustering.
    FeatureError
        When the encoder produced NaN features.
    """
    from ..data.writers import atomic_path, write_table
    from ..preprocessing import Preprocessor
    from .features import load_features, save_features
    from .voting import read_groups, score_groups

    check_run_folder(out_dir, overwrite)
    fitted = FittedClustering.load(model)
    config = fitted.config
    say = log or (lambda message: None)
    collection = _open(source, label_column)
    ids = collection.ids
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stages = _StageLog(out, force)
    preprocessor = Preprocessor(_effective_preprocess(config))
    files = {
        "features": out / "features.parquet",
        "reduced": out / "reduced.parquet",
        "groups": out / "groups.csv",
        "scores": out / "scores.json",
        "plots": out / "plots",
    }
    model_print = _fingerprint(
        {
            name: hashlib.sha256((Path(model) / name).read_bytes()).hexdigest()
            for name in _fitted_files(config)
        }
    )
    data_print = _fingerprint({"source": collection.name, "ids": ids})

    def report(stage: str, reused: bool) -> None:
        say(f"{stage}: {'reused from an earlier run' if reused else 'done'}")

    encode_print = _fingerprint({"data": data_print, "model": model_print})
    reused = stages.fresh("encode", encode_print, [files["features"]])
    if not reused:
        features, _ = _encode(collection, preprocessor, config, fitted.denoiser, fitted.trend)
        save_features(files["features"], ids, features)
        stages.record("encode", encode_print)
    report("encode", reused)

    reused = stages.fresh("assign", encode_print, [files["reduced"], files["groups"]])
    if reused:
        _, reduced = load_features(files["reduced"])
        groups = read_groups(files["groups"])
    else:
        _, features = load_features(files["features"])
        reduced = fitted.pca.transform(features, name=str(files["features"]))
        groups = fitted.voting.predict(reduced, name=str(files["features"])).to_table(ids)
        save_features(files["reduced"], ids, reduced)
        write_table(files["groups"], groups)
        stages.record("assign", encode_print)
    report("assign", reused)
    group = _group_array(groups)
    classified = np.asarray(groups["classified"], dtype=bool)

    scores = None
    if label_column is not None:
        evaluate_print = _fingerprint({"assign": encode_print, "label_column": label_column})
        reused = stages.fresh("evaluate", evaluate_print, [files["scores"]])
        if reused:
            scores = json.loads(files["scores"].read_text())
        else:
            labels, labelled = labels_where_present(collection, label_column)
            voting = score_groups(group[labelled], labels[labelled], classified[labelled])
            scores = {"voting": voting | {"n_labelled": int(labelled.sum())}}
            with atomic_path(files["scores"]) as tmp:
                tmp.write_text(json.dumps(scores, indent=2))
            stages.record("evaluate", evaluate_print)
        report("evaluate", reused)

    plots_print = _fingerprint({"assign": encode_print})
    plot_files = [files["plots"] / name for name in ("groups.png", "embedding.png")]
    reused = stages.fresh("plots", plots_print, plot_files)
    if not reused:
        _plot_all(
            collection, preprocessor, groups, group, classified, reduced, None, plot_files, config
        )
        stages.record("plots", plots_print)
    report("plots", reused)
    return ClusterResult(
        out, groups, scores, stages.ran, stages.skipped, files, stages.seconds, stages.cpu_seconds
    )


def _group_array(groups) -> np.ndarray:
    """The ``group`` column with -1 where unclassified (read back, it may be unmasked)."""
    column = groups["group"]
    return np.asarray(column.filled(-1) if hasattr(column, "filled") else column)


def _is_model_folder(encoder: str) -> bool:
    return encoder not in (MORPHOLOGY_ENCODER, OWN_AUTOENCODER) and Path(encoder).is_dir()


def _denoiser_skips(config: ClusterConfig) -> bool:
    """Skip connections make the better denoiser, but leave no bottleneck to encode with."""
    return config.encoder != OWN_AUTOENCODER


def _effective_preprocess(config: ClusterConfig):
    """The pipeline's preprocessing: an encoder folder's own, else the config's."""
    from ..preprocessing import PreprocessConfig

    folder = Path(config.encoder)
    stored = read_config(folder)[0].preprocessing if _is_model_folder(config.encoder) else None
    if stored is None:
        return config.preprocess_config()
    trained_with = PreprocessConfig.from_dict(stored)
    if config.preprocess is not None and config.preprocess_config() != trained_with:
        raise ConfigError(
            f"{folder}: the encoder was trained with other preprocessing; "
            "leave preprocess unset to use its own"
        )
    return trained_with


def _encode(
    collection,
    preprocessor,
    config: ClusterConfig,
    denoiser_folder: Path | None,
    trend: SnrTrend | None = None,
) -> tuple[np.ndarray, SnrTrend | None]:
    """Encoder features of every galaxy, and the descriptors' S/N trend (see :func:`_describe`)."""
    from .autoencoder import denoise
    from .encoders import PolarStep

    denoiser = (
        load_model(denoiser_folder, architecture=AUTOENCODER).network if denoiser_folder is not None else None
    )
    if config.encoder == MORPHOLOGY_ENCODER:
        return _describe(collection, preprocessor, config, denoiser, trend)
    if config.encoder == OWN_AUTOENCODER:
        encoder = AutoencoderEncoder(denoiser_folder, batch_size=config.batch_size, device="cpu")
        denoiser = None  # its encoder was trained on the noisy images themselves
    else:
        bands = collection[0].image.shape[0]
        encoder = load_encoder(
            config.encoder,
            weights=config.encoder_weights,
            bands=bands,
            image_size=config.input_size,
            batch_size=config.batch_size,
        )
    polar = (
        PolarStep(config.polar_radii, config.polar_angles, config.polar_extension)
        if config.polar
        else None
    )
    features = []
    for batch in collection.iter_batches(config.batch_size, preprocess=preprocessor):
        images = batch.images
        if denoiser is not None:
            images = denoise(denoiser, images, config.batch_size)
        if polar is not None:
            images = polar(images)
        features.append(encoder.encode(images))
    return np.concatenate(features), None


def _describe(
    collection, preprocessor, config: ClusterConfig, denoiser, trend: SnrTrend | None
) -> tuple[np.ndarray, SnrTrend]:
    """Morphology descriptors of every galaxy, freed of their trend with S/N.

    The trend is fitted on these galaxies unless ``trend`` (fitted on the
    galaxies of an earlier run) is given.
    """
    from .autoencoder import denoise

    encoder = MorphologyEncoder(
        angular=config.polar, n_radii=config.polar_radii, n_angles=config.polar_angles
    )
    values, log_snr = [], []
    for batch in collection.iter_batches(config.batch_size, preprocess=preprocessor):
        images = batch.images
        if denoiser is not None:
            images = denoise(denoiser, images, config.batch_size)
        described = encoder.descriptors(images)
        values.append(described.values)
        log_snr.append(described.log_snr)
    values, log_snr = np.concatenate(values), np.concatenate(log_snr)
    if trend is None:
        trend = SnrTrend.fit(values, log_snr, config.snr_trend_degree, name=collection.name)
    return trend.transform(values, log_snr, name=collection.name), trend


def _plot_all(
    collection, preprocessor, groups, group, classified, reduced, morphometry, plot_files, config
) -> None:
    from .plots import plot_embedding_map, plot_group_mosaics, plot_morphology_planes

    per_group = 8
    vote_fraction = np.asarray(groups["vote_fraction"], dtype=float)
    shown = []
    for members in [classified & (group == g) for g in np.unique(group[classified])] + [
        ~classified
    ]:
        chosen = np.flatnonzero(members)
        shown.extend(chosen[np.argsort(-vote_fraction[chosen], kind="stable")][:per_group])
    shown = np.sort(np.asarray(shown, dtype=int))
    images = collection.subset(shown).read_images(preprocessor, config.batch_size)
    ids = np.asarray(collection.ids)[shown]
    plot_group_mosaics(
        images,
        group[shown],
        classified[shown],
        plot_files[0],
        vote_fraction=vote_fraction[shown],
        per_group=per_group,
        ids=ids,
        title=f"{int(classified.sum())} of {group.size} galaxies classified, best voted shown",
    )
    plot_embedding_map(
        reduced, group, classified, plot_files[1], method=config.embedding_map, seed=config.seed
    )
    if morphometry is not None:
        plot_morphology_planes(morphometry, group, classified, plot_files[2])
