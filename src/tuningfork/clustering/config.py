"""Settings of the clustering pipeline, importable without torch.

:class:`ClusterConfig` lives apart from :mod:`.pipeline` so that the command
line can read its defaults (one place for each) without loading the
networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Serialisable
from ..errors import ConfigError
from ..models.registry import MORPHOLOGY_ENCODER
from .voting import VotingClustering, VotingSettings, check_n_clusters

#: ``encoder`` value that uses the latent space of the pipeline's own denoiser.
OWN_AUTOENCODER = "autoencoder"
DEFAULT_PREPROCESS = {"output_size": 64}


# The voting settings default to the estimator's own.
_VOTING = VotingSettings()


@dataclass(frozen=True)
class ClusterConfig(Serialisable):
    """Settings of :func:`run_cluster_pipeline`.

    Parameters
    ----------
    n_clusters : int
        Groups K of every voting member (20 in the paper).
    n_bootstrap : int
        Bootstrap resamples B.
    models : tuple of str
        Clustering algorithms of the members.
    threshold : float
        Fraction of members that must agree to classify a galaxy.
    max_fit_samples : int or None
        Bootstrap resample size cap (bounds Ward's quadratic cost).
    pca_components : int or float
        Components kept, or variance fraction explained.
    encoder : str
        ``"morphology"`` (default): rotation-invariant morphology descriptors
        (:mod:`~tuningfork.models.nets.descriptors`), which need no weights
        and, unlike a ConvNeXt without its pretrained weights, group by
        shape; a timm architecture (``convnext_large`` in the paper) with
        ``encoder_weights``; a tuningfork model folder (autoencoder,
        supervised or foundation model); or ``"autoencoder"`` for the
        bottleneck of the pipeline's own denoiser (requires ``denoise``).
        Folders and ``"autoencoder"`` saw Cartesian images in training and
        so exclude ``polar``.
    encoder_weights : str, optional
        Local weights file of the timm architecture.
    input_size : int
        Side, in pixels, of the timm encoder's input.
    snr_trend_degree : int
        ``"morphology"`` only: degree of the polynomial in log S/N removed
        from every descriptor over the data set, so that groups do not
        follow brightness (0: only standardise).
    denoise : bool
        Train a denoising autoencoder on the images and denoise before
        encoding.  Off by default: on simulated galaxies of S/N 20-200 it
        did not make the morphology descriptors' groups purer (see
        ``benchmarks/results/clustering.md``); the paper denoised before its
        ConvNeXt.
    denoise_epochs, denoise_channels, denoise_depth : int
        Autoencoder training length and size.
    denoise_max_train : int
        Galaxies drawn at random to train the autoencoder.
    polar : bool
        The polar step.  Timm encoders see the image resampled on a polar
        grid with an extended angle axis; the ``"morphology"`` encoder adds
        the amplitudes of angular Fourier modes measured on a polar grid.
    polar_radii, polar_angles : int
        Polar grid.
    polar_extension : float
        Fraction of the turn repeated after 2 pi (timm encoders; a Fourier
        transform along the angle needs none).
    preprocess : dict, optional
        :class:`~tuningfork.preprocessing.PreprocessConfig` settings; by
        default those stored in an encoder model folder, else 64 x 64
        pixels, linear stretch, min-max normalised.
    label_column : str, optional
        Catalog column of known classes, for the ``evaluate`` stage; rows
        with a blank label are clustered but not scored.
    sweep_k : tuple of int
        K values for the ``sweep`` stage (empty: no sweep).
    morphometry : bool
        Measure every galaxy with statmorph (slow: about a second each).
    workers : int
        Processes for the morphometry.
    embedding_map : {'umap', 'pca'}
        Projection of the embedding map plot.
    batch_size : int
        Images per encoder batch.
    seed : int
        Seed of every random step.
    """

    n_clusters: int = _VOTING.n_clusters
    n_bootstrap: int = _VOTING.n_bootstrap
    models: tuple[str, ...] = _VOTING.models
    threshold: float = _VOTING.threshold
    max_fit_samples: int | None = _VOTING.max_fit_samples
    pca_components: float | int = 0.9
    encoder: str = MORPHOLOGY_ENCODER
    encoder_weights: str | None = None
    input_size: int = 224
    snr_trend_degree: int = 2
    denoise: bool = False
    denoise_epochs: int = 20
    denoise_channels: int = 16
    denoise_depth: int = 3
    denoise_max_train: int = 5000
    polar: bool = True
    polar_radii: int = 32
    polar_angles: int = 64
    polar_extension: float = 0.5
    preprocess: dict | None = None
    label_column: str | None = None
    sweep_k: tuple[int, ...] = ()
    morphometry: bool = False
    workers: int = 1
    embedding_map: str = "umap"
    batch_size: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "sweep_k", tuple(int(k) for k in self.sweep_k))
        check_n_clusters(self.n_clusters, max(self.n_clusters, 2), "ClusterConfig")
        if self.encoder == OWN_AUTOENCODER and not self.denoise:
            raise ConfigError(
                "ClusterConfig: encoder 'autoencoder' needs denoise=True "
                "(it is the denoiser's latent)"
            )
        if self.encoder == OWN_AUTOENCODER and self.polar:
            raise ConfigError(
                "ClusterConfig: encoder 'autoencoder' was trained on Cartesian images; "
                "set polar=False"
            )
        if self.embedding_map not in ("umap", "pca"):
            raise ConfigError(
                f"ClusterConfig: embedding_map must be 'umap' or 'pca', got {self.embedding_map!r}"
            )
        for name in (
            "n_bootstrap",
            "denoise_epochs",
            "denoise_max_train",
            "batch_size",
            "workers",
            "input_size",
            "polar_radii",
            "polar_angles",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"ClusterConfig: {name} must be at least 1, got {getattr(self, name)}"
                )
        if self.snr_trend_degree < 0:
            raise ConfigError(
                f"ClusterConfig: snr_trend_degree must be 0 or more, got {self.snr_trend_degree}"
            )

    def preprocess_config(self):
        """The :class:`~tuningfork.preprocessing.PreprocessConfig` of the images."""
        from ..preprocessing import PreprocessConfig

        return PreprocessConfig.from_dict(
            DEFAULT_PREPROCESS if self.preprocess is None else self.preprocess
        )

    def voting(self) -> VotingClustering:
        """The unfitted :class:`VotingClustering` of these settings."""
        return VotingClustering(
            self.n_clusters,
            n_bootstrap=self.n_bootstrap,
            models=self.models,
            threshold=self.threshold,
            max_fit_samples=self.max_fit_samples,
            seed=self.seed,
        )


