"""The stages of a catalog run and their models, read from a TOML file.

A ``pipeline.toml`` names the stages to run, each a table of its own
(``examples/pipeline.toml`` is a commented example)::

    shard_size = 1000
    columns = ["redshift"]

    [classification]
    model = "models/classifier"
    target_accuracy = 0.95

    [clustering]
    fit_sample = 5000

    [embeddings]
    encoder = "morphology"

A stage that is absent is not run.  Every table is a :class:`Serialisable`
dataclass, so an unknown stage or key is refused with one line naming the
known ones.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

from ..config import Serialisable
from ..errors import ConfigError
from .manifest import SHARD_SIZE

STAGES = ("classification", "clustering", "embeddings", "morphometry")


@dataclass
class ClassificationStage(Serialisable):
    """Classes (or Galaxy Zoo vote fractions) with calibrated triage, from a model folder.

    Attributes
    ----------
    model : str
        Model folder from :func:`~tuningfork.training.train`.
    target_accuracy, min_confidence : float, optional
        Triage, as in :func:`~tuningfork.training.predict`.
    batch_size : int
        Galaxies per forward pass.
    engine : {"auto", "torch", "onnx"}
        Runs the network: ONNX Runtime when the model folder holds its
        exported graph (``network.onnx``), else PyTorch (``auto``); or either.
        The outputs agree to float rounding.  With ONNX Runtime no process
        of the run imports torch (the client exports the graph once into the
        catalog folder when the model folder has none), and on 424 px JPEGs
        one worker ran 313 instead of 239 images per CPU-second on 10,000
        rows (benchmarks/results/scale.md).
    """

    model: str | None = None
    target_accuracy: float | None = None
    min_confidence: float | None = None
    batch_size: int = 256
    engine: str = "auto"


@dataclass
class ClusteringStage(Serialisable):
    """Groups of the voting clustering, from a fitted folder or fitted on a sample first.

    Attributes
    ----------
    model : str, optional
        A fitted clustering folder (``clustering/`` of a ``tuningfork
        cluster`` run).  Without one, a clustering is fitted on a seeded
        random sample of ``fit_sample`` galaxies drawn across all shards.
    fit_sample : int
        Galaxies of that sample.
    seed : int
        Seed of the sample (the clustering's own seed is in ``options``).
    options : dict
        :class:`~tuningfork.clustering.ClusterConfig` settings of the fit.
    """

    model: str | None = None
    fit_sample: int = 5000
    seed: int = 0
    options: dict = field(default_factory=dict)


@dataclass
class EmbeddingStage(Serialisable):
    """Embedding vectors, a faiss index, outlier scores and nearest neighbours.

    Attributes
    ----------
    encoder : str
        ``"morphology"``, ``"timm:NAME"`` (with ``weights``) or a model folder
        (see :func:`~tuningfork.models.load_encoder`).
    weights : str, optional
        Local weights of a timm backbone.
    neighbours : int
        Nearest galaxies listed per galaxy (``neighbour_1`` ...).
    index : {"auto", "flat", "ivf", "hnsw"}
        faiss index kind; ``auto`` is exact below 50,000 galaxies, IVF above.
    train_sample : int
        Vectors an IVF index is trained on (a seeded random sample).
    bands : int, optional
        Image bands of a timm backbone; the data's by default.
    seed : int
    batch_size : int
        Galaxies per forward pass.
    """

    encoder: str = "morphology"
    weights: str | None = None
    bands: int | None = None
    neighbours: int = 5
    index: str = "auto"
    train_sample: int = 100_000
    seed: int = 0
    batch_size: int = 64


@dataclass
class MorphometryStage(Serialisable):
    """statmorph's Gini, M20, CAS, Sersic index, half-light radius and flags (slow).

    Attributes
    ----------
    band : int, optional
        Band to measure; the mean of the bands by default.
    gain : float, optional
        Electrons per image unit.
    sky : float or "auto"
        ``auto`` measures each galaxy's sky; a number is a known level.
    mask, psf : str, optional
        FITS bad-pixel mask and PSF image.
    quantities : list of str, optional
        statmorph outputs to keep (the library's default set otherwise).
    statmorph_options : dict
        Further options of :func:`~tuningfork.morphometry.morphometry_catalog`
        (``include_doublesersic`` ...).
    """

    band: int | None = None
    gain: float | None = None
    sky: float | str = "auto"
    mask: str | None = None
    psf: str | None = None
    quantities: list[str] | None = None
    statmorph_options: dict = field(default_factory=dict)

    def options(self) -> dict:
        """Keyword arguments of :func:`~tuningfork.morphometry.morphometry_catalog`."""
        options = {"band": self.band, "gain": self.gain, "sky": self.sky, "mask": self.mask, "psf": self.psf,
                   **self.statmorph_options}
        return options if self.quantities is None else {**options, "quantities": tuple(self.quantities)}


@dataclass
class PipelineConfig(Serialisable):
    """Every stage of a catalog run (None: not run), the carried columns and the shard size.

    Attributes
    ----------
    shard_size : int
        Galaxies per shard (and per Parquet part).
    columns : list of str
        Catalog columns carried into the catalog (``file``, ``ra``, ``dec``
        always are).
    classification, clustering, embeddings, morphometry
        The stages' settings.
    """

    shard_size: int = SHARD_SIZE
    columns: list[str] = field(default_factory=list)
    classification: ClassificationStage | None = None
    clustering: ClusteringStage | None = None
    embeddings: EmbeddingStage | None = None
    morphometry: MorphometryStage | None = None

    @classmethod
    def from_dict(cls, settings: dict[str, Any]) -> Self:
        """Build the config from a dict of settings and one sub-dict per stage.

        Raises
        ------
        ConfigError
            An unknown stage or key (naming the known ones).
        """
        if not isinstance(settings, dict):
            raise ConfigError(f"PipelineConfig: expected a mapping of settings, got {type(settings).__name__}")
        known = ("shard_size", "columns", *STAGES)
        unknown = sorted(set(settings) - set(known))
        if unknown:
            raise ConfigError(f"unknown stage or setting(s) {', '.join(map(repr, unknown))} "
                              f"(stages: {', '.join(STAGES)}; settings: shard_size, columns)")
        kinds = {"classification": ClassificationStage, "clustering": ClusteringStage,
                 "embeddings": EmbeddingStage, "morphometry": MorphometryStage}
        converted = dict(settings)
        for name, kind in kinds.items():
            if converted.get(name) is not None:
                converted[name] = kind.from_dict(converted[name])
        if "columns" in converted:
            converted["columns"] = list(converted["columns"])
        return super().from_dict(converted)

    def stages(self) -> list[str]:
        """Names of the stages that run, in :data:`STAGES` order."""
        return [name for name in STAGES if getattr(self, name) is not None]


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read a ``pipeline.toml``; relative model paths are taken from its folder.

    Parameters
    ----------
    path : str or Path

    Returns
    -------
    PipelineConfig

    Raises
    ------
    MissingFileError
        No such file.
    ConfigError
        Not valid TOML, or an unknown stage or key (the message names the file).
    """
    from ..errors import MissingFileError

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "pipeline config")
    try:
        settings = tomllib.loads(path.read_text())
        config = PipelineConfig.from_dict(settings)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML ({error})") from None
    except ConfigError as error:
        raise ConfigError(f"{path}: {error}") from None
    for stage, key in (("classification", "model"), ("clustering", "model"), ("embeddings", "weights"),
                       ("morphometry", "mask"), ("morphometry", "psf")):
        settings = getattr(config, stage)
        value = getattr(settings, key) if settings is not None else None
        if value is not None and not Path(value).is_absolute():
            setattr(settings, key, str(path.parent / value))
    if config.embeddings is not None and Path(path.parent / config.embeddings.encoder).is_dir():
        config.embeddings.encoder = str(path.parent / config.embeddings.encoder)
    return config
