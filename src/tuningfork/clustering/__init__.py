"""Unsupervised morphology: denoising, encoding, PCA and bagging voting clustering.

The method of "An efficient unsupervised classification model for galaxy
morphology: voting clustering based on coding from ConvNeXt large model":
denoise with an autoencoder, turn rotations into translations with a polar
step, encode with a ConvNeXt (or any model folder), reduce with PCA, and let
many bootstrap clusterings vote; galaxies without a consensus stay
unclassified.  Without ImageNet weights, the default encoder is a set of
rotation-invariant morphology descriptors (:mod:`tuningfork.models.nets.descriptors`).
:func:`run_cluster_pipeline` chains it all, resumably.
"""

from .autoencoder import (
    apply_denoiser,
    denoise,
    denoising_gain,
    embed,
    train_autoencoder,
    train_denoiser,
)
from .encoders import PolarStep, rotation_consistency
from .features import check_features, load_features, save_features
from .pipeline import (
    ClusterConfig,
    ClusterResult,
    FittedClustering,
    assign_groups,
    kmeans_groups,
    raw_pixel_features,
    run_cluster_pipeline,
)
from .reduction import PCAProjection, fit_pca
from .sweep import sweep_k
from .voting import (
    CLUSTERING_MODELS,
    VoteResult,
    VotingClustering,
    VotingSettings,
    align_labels,
    consensus_alignment,
    consensus_vote,
    label_alignment,
    read_groups,
    score_groups,
    vote_aligned,
    voting_clustering,
)

__all__ = [
    "CLUSTERING_MODELS",
    "ClusterConfig",
    "ClusterResult",
    "FittedClustering",
    "PCAProjection",
    "PolarStep",
    "VoteResult",
    "VotingClustering",
    "VotingSettings",
    "align_labels",
    "apply_denoiser",
    "assign_groups",
    "check_features",
    "consensus_alignment",
    "consensus_vote",
    "denoise",
    "denoising_gain",
    "embed",
    "fit_pca",
    "kmeans_groups",
    "label_alignment",
    "load_features",
    "raw_pixel_features",
    "read_groups",
    "rotation_consistency",
    "run_cluster_pipeline",
    "save_features",
    "score_groups",
    "sweep_k",
    "train_autoencoder",
    "train_denoiser",
    "vote_aligned",
    "voting_clustering",
]
