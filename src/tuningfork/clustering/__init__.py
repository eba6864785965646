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

from __future__ import annotations

import lazy_loader

# Submodules load on first use, so that `tuningfork --help` and a notebook's
# `import tuningfork.X` do not pay for torch and Lightning until they are needed.
__getattr__, __dir__, __all__ = lazy_loader.attach(
    __name__,
    submod_attrs={
        "autoencoder": ["apply_denoiser", "denoise", "denoising_gain", "embed", "train_autoencoder", "train_denoiser"],
        "encoders": ["PolarStep", "rotation_consistency"],
        "features": ["check_features", "load_features", "save_features"],
        "pipeline": ["ClusterConfig", "ClusterResult", "FittedClustering", "assign_groups", "kmeans_groups", "raw_pixel_features", "run_cluster_pipeline"],
        "reduction": ["PCAProjection", "fit_pca"],
        "sweep": ["sweep_k"],
        "voting": ["CLUSTERING_MODELS", "VoteResult", "VotingClustering", "VotingSettings", "align_labels", "consensus_alignment", "consensus_vote", "label_alignment", "read_groups", "score_groups", "vote_aligned", "voting_clustering"],
    },
)
