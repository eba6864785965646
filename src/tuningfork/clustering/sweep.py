"""Choosing the number of groups K.

For each K the sweep reports three views that disagree in instructive ways:
the silhouette of a k-means partition (compactness and separation), the BIC
of a Gaussian mixture (likelihood penalised by parameter count), and the
stability of the voting consensus across seeds (adjusted Rand index between
runs, on the galaxies both runs classify) with the fraction classified.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations

import numpy as np

from .features import check_features
from .voting import CLUSTERING_MODELS, check_n_clusters, voting_clustering


def sweep_k(
    features: np.ndarray,
    k_values: Sequence[int],
    *,
    n_seeds: int = 3,
    n_bootstrap: int = 5,
    models: Sequence[str] = CLUSTERING_MODELS,
    threshold: float = 0.5,
    max_fit_samples: int | None = 5000,
    silhouette_samples: int = 2000,
    seed: int = 0,
    name: str = "features",
):
    """Score candidate numbers of groups.

    Parameters
    ----------
    features : ndarray
        (n_galaxies, n_features), e.g. PCA components.
    k_values : sequence of int
        Candidate K values, each in 2..n_galaxies.
    n_seeds : int
        Voting runs per K for the stability score (at least 2 for an ARI).
    n_bootstrap, models, threshold, max_fit_samples
        Passed to :func:`~tuningfork.clustering.voting.voting_clustering`.
    silhouette_samples : int
        Galaxies sampled for the silhouette (its cost grows as the square).
    seed : int
        Base seed.
    name : str
        What to call the features in error messages.

    Returns
    -------
    astropy.table.Table
        One row per K: ``k``, ``silhouette``, ``bic``, ``stability_ari``
        (mean pairwise ARI of the consensus over seeds; NaN with one seed
        or no galaxy classified by both runs) and ``fraction_classified``
        (mean over seeds).
    """
    from astropy.table import Table
    from sklearn.cluster import KMeans
    from sklearn.metrics import adjusted_rand_score, silhouette_score
    from sklearn.mixture import GaussianMixture

    matrix = check_features(features, name)
    for k in k_values:
        check_n_clusters(k, matrix.shape[0], name)
    rows = []
    for k in k_values:
        labels = KMeans(k, n_init=3, random_state=seed).fit_predict(matrix)
        silhouette = silhouette_score(
            matrix, labels, sample_size=min(silhouette_samples, matrix.shape[0]), random_state=seed
        )
        bic = (
            GaussianMixture(k, covariance_type="full", reg_covar=1e-4, random_state=seed)
            .fit(matrix)
            .bic(matrix)
        )
        runs = [
            voting_clustering(
                matrix,
                k,
                n_bootstrap=n_bootstrap,
                models=models,
                threshold=threshold,
                max_fit_samples=max_fit_samples,
                seed=seed + offset,
                name=name,
            )
            for offset in range(n_seeds)
        ]
        agreements = []
        for first, second in combinations(runs, 2):
            both = first.classified & second.classified
            if both.any():
                agreements.append(adjusted_rand_score(first.group[both], second.group[both]))
        rows.append(
            (
                int(k),
                float(silhouette),
                float(bic),
                float(np.mean(agreements)) if agreements else np.nan,
                float(np.mean([run.fraction_classified for run in runs])),
            )
        )
    return Table(
        rows=rows, names=("k", "silhouette", "bic", "stability_ari", "fraction_classified")
    )
