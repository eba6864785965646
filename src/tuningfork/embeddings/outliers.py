"""Unsupervised outlier scores of embeddings.

No single detector is reliable on every kind of anomaly: an isolation forest
finds galaxies that are extreme along a few directions, the distance to the
k-th neighbour finds galaxies far from everything, and the local outlier
factor finds galaxies that sit in a sparse spot next to a dense cluster.
Their scores live on different scales, so they are combined by averaging
their ranks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
from astropy.table import Table
from scipy.stats import rankdata

from ..errors import ConfigError


def _isolation_forest(vectors: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=200, random_state=seed).fit(vectors)
    return -forest.score_samples(vectors)


def _knn_distance(vectors: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    from sklearn.neighbors import NearestNeighbors

    # One more neighbour than asked, because each point is its own nearest.
    distances, _ = NearestNeighbors(n_neighbors=n_neighbors + 1).fit(vectors).kneighbors(vectors)
    return distances[:, -1]


def _local_outlier_factor(vectors: np.ndarray, n_neighbors: int, seed: int) -> np.ndarray:
    from sklearn.neighbors import LocalOutlierFactor

    return -LocalOutlierFactor(n_neighbors=n_neighbors).fit(vectors).negative_outlier_factor_


#: Detectors by name; each returns one score per row, larger = more anomalous.
DETECTORS: dict[str, Callable[[np.ndarray, int, int], np.ndarray]] = {
    "isolation_forest": _isolation_forest,
    "knn": _knn_distance,
    "lof": _local_outlier_factor,
}


def outlier_scores(
    vectors: np.ndarray,
    ids: Sequence[str],
    detectors: Sequence[str] = ("isolation_forest", "knn", "lof"),
    n_neighbors: int = 20,
    seed: int = 0,
) -> Table:
    """Score every galaxy for how anomalous its embedding is.

    Parameters
    ----------
    vectors : ndarray
        (n, dim) embeddings; not modified.
    ids : sequence of str
        Galaxy ids, one per row.
    detectors : sequence of str
        Names from :data:`DETECTORS`; at least one.
    n_neighbors : int
        Neighbourhood size of the kNN and LOF detectors (capped at n - 1).
    seed : int
        Seed of the isolation forest.

    Returns
    -------
    astropy.table.Table
        Sorted from the most anomalous: ``rank`` (1 = most anomalous), ``id``,
        ``score`` (mean of the detectors' rank fractions, in (0, 1]), and one
        raw ``score_<detector>`` column per detector.
    """
    vectors = np.array(vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise ConfigError(
            f"outlier scores need one id per embedding row: got {len(ids)} ids for {vectors.shape}"
        )
    unknown = [name for name in detectors if name not in DETECTORS]
    if unknown or not detectors:
        raise ConfigError(
            f"outlier detectors {unknown or '[]'} unknown (choose from {', '.join(DETECTORS)})"
        )
    if len(ids) < 3:
        raise ConfigError(f"outlier detection needs at least 3 embeddings, got {len(ids)}")
    neighbours = min(n_neighbors, len(ids) - 1)
    table = Table({"id": [str(i) for i in ids]})
    ranks = []
    for name in detectors:
        raw = DETECTORS[name](vectors, neighbours, seed)
        table[f"score_{name}"] = raw.astype(np.float32)
        ranks.append(rankdata(raw) / len(raw))
    table["score"] = np.mean(ranks, axis=0).astype(np.float32)
    table.sort("score", reverse=True)
    table.add_column(np.arange(1, len(table) + 1), name="rank", index=0)
    return table[["rank", "id", "score"] + [f"score_{name}" for name in detectors]]
