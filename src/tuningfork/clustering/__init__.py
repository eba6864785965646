"""Unsupervised morphology: denoising, encoding, PCA and bagging voting clustering.

The method of "An efficient unsupervised classification model for galaxy
morphology: voting clustering based on coding from ConvNeXt large model":
denoise with an autoencoder, turn rotations into translations with a polar
step, encode with a ConvNeXt (or any model folder), reduce with PCA, and let
many bootstrap clusterings vote; galaxies without a consensus stay
unclassified.  Without ImageNet weights, the default encoder is a set of
rotation-invariant morphology descriptors (:mod:`.descriptors`).
:func:`run_cluster_pipeline` chains it all, resumably.
"""

from .autoencoder import (
    DenoisingAutoencoder,
    apply_denoiser,
    denoise,
    denoising_gain,
    embed,
    load_autoencoder,
    save_autoencoder,
    train_autoencoder,
    train_denoiser,
)
from .descriptors import (
    MORPHOLOGY_ENCODER,
    MorphologyDescriptors,
    MorphologyEncoder,
    describe_morphology,
    normalise_descriptors,
)
from .encoders import AutoencoderEncoder, PolarStep, TimmEncoder, load_encoder, rotation_consistency
from .features import check_features, load_features, save_features
from .pipeline import (
    ClusterConfig,
    ClusterResult,
    kmeans_groups,
    raw_pixel_features,
    run_cluster_pipeline,
)
from .reduction import PCAProjection, fit_pca
from .sweep import sweep_k
from .voting import (
    CLUSTERING_MODELS,
    VoteResult,
    align_labels,
    consensus_vote,
    read_groups,
    score_groups,
    vote_aligned,
    voting_clustering,
)

__all__ = [
    "CLUSTERING_MODELS",
    "MORPHOLOGY_ENCODER",
    "AutoencoderEncoder",
    "ClusterConfig",
    "ClusterResult",
    "DenoisingAutoencoder",
    "MorphologyDescriptors",
    "MorphologyEncoder",
    "PCAProjection",
    "PolarStep",
    "TimmEncoder",
    "VoteResult",
    "align_labels",
    "apply_denoiser",
    "check_features",
    "consensus_vote",
    "denoise",
    "denoising_gain",
    "describe_morphology",
    "embed",
    "fit_pca",
    "kmeans_groups",
    "load_autoencoder",
    "load_encoder",
    "load_features",
    "normalise_descriptors",
    "raw_pixel_features",
    "read_groups",
    "rotation_consistency",
    "run_cluster_pipeline",
    "save_autoencoder",
    "save_features",
    "score_groups",
    "sweep_k",
    "train_autoencoder",
    "train_denoiser",
    "vote_aligned",
    "voting_clustering",
]
