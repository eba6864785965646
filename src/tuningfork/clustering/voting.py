"""Bagging voting clustering: many clusterings vote, only a consensus assigns a group.

B bootstrap resamples of the features are each clustered by M different
algorithms into K groups.  Every member then labels all galaxies; the
members' arbitrary label numbers are matched to a common reference with the
Hungarian algorithm, and a galaxy gets a group only when at least a
threshold fraction of the members put it there.  The others stay
unclassified: in the ConvNeXt voting-clustering paper about half of the
COSMOS galaxies, and the groups of the other half were much cleaner than a
single k-means.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..errors import ConfigError, MissingColumnError, MissingFileError
from .features import check_features

#: Clustering algorithms a voting member can use.
CLUSTERING_MODELS = ("kmeans", "ward", "gmm", "birch")
#: Columns of the group catalog.
GROUP_COLUMNS = ("id", "group", "classified", "vote_fraction", "second_group", "second_fraction")
# BIRCH merges points closer than this fraction of the data's rms spread
# into one subcluster: small enough to keep K groups apart, large enough to
# stay fast on 10^4 points.
_BIRCH_THRESHOLD_FRACTION = 0.1


def check_n_clusters(n_clusters: int, n_samples: int, name: str = "features") -> None:
    """Raise :class:`ConfigError` unless 2 <= K <= number of galaxies.

    Parameters
    ----------
    n_clusters : int
        Requested number of groups K.
    n_samples : int
        Number of galaxies.
    name : str
        What to call the data in the message.
    """
    if int(n_clusters) != n_clusters or n_clusters < 2:
        raise ConfigError(
            f"{name}: the number of groups K must be an integer >= 2, got {n_clusters}"
        )
    if n_clusters > n_samples:
        raise ConfigError(
            f"{name}: K={n_clusters} groups requested but the sample has only {n_samples} galaxies"
        )


def align_labels(labels: np.ndarray, reference: np.ndarray, n_clusters: int) -> np.ndarray:
    """Renumber one clustering's groups to match a reference clustering.

    The renumbering maximises the number of galaxies whose group agrees with
    the reference (Hungarian algorithm on the K x K contingency table).

    Parameters
    ----------
    labels : ndarray of int
        Group of each galaxy, in 0..K-1.
    reference : ndarray of int
        Reference group of each galaxy, in 0..K-1.
    n_clusters : int
        K.

    Returns
    -------
    ndarray of int
        A new array: ``labels`` renumbered.
    """
    labels = np.asarray(labels, dtype=np.intp)
    reference = np.asarray(reference, dtype=np.intp)
    contingency = np.zeros((n_clusters, n_clusters), dtype=np.int64)
    np.add.at(contingency, (labels, reference), 1)
    own, matched = linear_sum_assignment(contingency, maximize=True)
    renumber = np.empty(n_clusters, dtype=np.intp)
    renumber[own] = matched
    return renumber[labels]


@dataclass(frozen=True)
class VoteResult:
    """Outcome of a vote among aligned clusterings.

    Attributes
    ----------
    group : ndarray of int
        Consensus group in 0..K-1, or -1 where ``classified`` is False
        (scikit-learn's convention for points without a cluster).
    classified : ndarray of bool
        True where at least ``threshold`` of the members agree.
    vote_fraction : ndarray of float
        Fraction of members voting for the most voted group.
    second_group : ndarray of int
        Runner-up group, or -1 where ``has_second`` is False.
    has_second : ndarray of bool
        True where some member voted for another group.
    second_fraction : ndarray of float
        Fraction of members voting for the runner-up (0 without one).
    votes : ndarray of int
        (n_galaxies, K) vote counts.
    threshold : float
        Fraction of the members required to classify.
    """

    group: np.ndarray
    classified: np.ndarray
    vote_fraction: np.ndarray
    second_group: np.ndarray
    has_second: np.ndarray
    second_fraction: np.ndarray
    votes: np.ndarray
    threshold: float

    @property
    def n_clusters(self) -> int:
        """Number of groups K."""
        return self.votes.shape[1]

    @property
    def fraction_classified(self) -> float:
        """Fraction of galaxies that received a group."""
        return float(self.classified.mean())

    def to_table(self, ids: Sequence[str]):
        """Return the group catalog.

        Parameters
        ----------
        ids : sequence of str
            Galaxy ids, in the order of the features.

        Returns
        -------
        astropy.table.Table
            Columns ``id``, ``group`` (masked when unclassified),
            ``classified``, ``vote_fraction``, ``second_group`` (masked when
            no member voted otherwise) and ``second_fraction``.
        """
        from astropy.table import MaskedColumn, Table

        if len(ids) != self.group.size:
            raise ConfigError(f"group catalog: {len(ids)} ids for {self.group.size} galaxies")
        return Table(
            {
                "id": np.asarray([str(i) for i in ids]),
                "group": MaskedColumn(self.group, mask=~self.classified),
                "classified": self.classified,
                "vote_fraction": self.vote_fraction,
                "second_group": MaskedColumn(self.second_group, mask=~self.has_second),
                "second_fraction": self.second_fraction,
            }
        )


def read_groups(path: str | Path):
    """Read a group catalog written from :meth:`VoteResult.to_table` as CSV.

    Parameters
    ----------
    path : str or Path
        ``groups.csv``.

    Returns
    -------
    astropy.table.Table
        With ``id`` as text, ``classified`` as bool and ``group`` /
        ``second_group`` masked where empty.

    Raises
    ------
    MissingFileError, MissingColumnError
    """
    from astropy.io import ascii
    from astropy.table import Table

    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "group catalog")
    # The C reader cannot take converters; ids like 007 must stay text, and
    # the booleans were written as True/False words.
    table = Table.read(
        path,
        format="ascii.csv",
        fast_reader=False,
        converters={"id": [ascii.convert_numpy(str)], "classified": [ascii.convert_numpy(bool)]},
    )
    for column in GROUP_COLUMNS:
        if column not in table.colnames:
            raise MissingColumnError(path, column, table.colnames)
    return table


def consensus_vote(
    member_labels: np.ndarray, n_clusters: int, threshold: float = 0.5
) -> VoteResult:
    """Count the votes of already aligned clusterings.

    Parameters
    ----------
    member_labels : ndarray of int
        (n_members, n_galaxies) groups in 0..K-1, numbered consistently
        (see :func:`align_labels`).
    n_clusters : int
        K.
    threshold : float
        Fraction of members, in (0, 1], that must agree for a galaxy to be
        classified.

    Returns
    -------
    VoteResult
    """
    if not 0 < threshold <= 1:
        raise ConfigError(f"voting threshold must be a fraction in (0, 1], got {threshold}")
    members = np.asarray(member_labels, dtype=np.intp)
    n_members, n_galaxies = members.shape
    votes = np.zeros((n_galaxies, n_clusters), dtype=np.int64)
    for labels in members:
        votes[np.arange(n_galaxies), labels] += 1
    ranked = np.argsort(-votes, axis=1, kind="stable")
    best, second = ranked[:, 0], ranked[:, 1]
    rows = np.arange(n_galaxies)
    vote_fraction = votes[rows, best] / n_members
    second_fraction = votes[rows, second] / n_members
    # A small tolerance so that e.g. 5 of 10 votes passes a 0.5 threshold
    # despite floating-point division.
    classified = vote_fraction >= threshold - 1e-9
    has_second = second_fraction > 0
    return VoteResult(
        group=np.where(classified, best, -1),
        classified=classified,
        vote_fraction=vote_fraction,
        second_group=np.where(has_second, second, -1),
        has_second=has_second,
        second_fraction=second_fraction,
        votes=votes,
        threshold=float(threshold),
    )


def _nearest_centroid(
    features: np.ndarray, sample: np.ndarray, sample_labels: np.ndarray, k: int
) -> np.ndarray:
    from sklearn.metrics import pairwise_distances_argmin

    centroids = np.stack([sample[sample_labels == g].mean(axis=0) for g in range(k)])
    return pairwise_distances_argmin(features, centroids)


def cluster_member(
    model: str, sample: np.ndarray, features: np.ndarray, n_clusters: int, seed: int
) -> np.ndarray:
    """Fit one clustering model on a sample and label every galaxy.

    Parameters
    ----------
    model : {'kmeans', 'ward', 'gmm', 'birch'}
        k-means, agglomerative Ward linkage, Gaussian mixture (full
        covariance) or BIRCH.  Ward has no ``predict``: galaxies outside the
        sample take the group of the nearest Ward centroid.
    sample : ndarray
        (n_sample, n_features) training rows (e.g. a bootstrap resample).
    features : ndarray
        (n_galaxies, n_features) rows to label.
    n_clusters : int
        K.
    seed : int
        Random seed of the model.

    Returns
    -------
    ndarray of int
        Group of each row of ``features``, in 0..K-1.
    """
    from sklearn.cluster import AgglomerativeClustering, Birch, KMeans
    from sklearn.mixture import GaussianMixture

    if model == "kmeans":
        return KMeans(n_clusters, n_init=3, random_state=seed).fit(sample).predict(features)
    if model == "gmm":
        mixture = GaussianMixture(
            n_clusters, covariance_type="full", reg_covar=1e-4, random_state=seed
        )
        return mixture.fit(sample).predict(features)
    if model == "ward":
        sample_labels = AgglomerativeClustering(n_clusters, linkage="ward").fit_predict(sample)
        return _nearest_centroid(features, sample, sample_labels, n_clusters)
    if model == "birch":
        spread = float(np.sqrt(sample.var(axis=0).sum()))
        birch = Birch(n_clusters=n_clusters, threshold=_BIRCH_THRESHOLD_FRACTION * spread)
        return birch.fit(sample).predict(features)
    raise ConfigError(
        f"unknown clustering model {model!r} (choose from {', '.join(CLUSTERING_MODELS)})"
    )


def voting_clustering(
    features: np.ndarray,
    n_clusters: int,
    *,
    n_bootstrap: int = 10,
    models: Sequence[str] = CLUSTERING_MODELS,
    threshold: float = 0.5,
    max_fit_samples: int | None = 5000,
    seed: int = 0,
    name: str = "features",
) -> VoteResult:
    """Cluster by bagging and voting.

    Parameters
    ----------
    features : ndarray
        (n_galaxies, n_features), e.g. PCA components of encoder features.
    n_clusters : int
        Number of groups K of every member.
    n_bootstrap : int
        Bootstrap resamples B; there are B x len(models) members.
    models : sequence of str
        Clustering algorithms (see :data:`CLUSTERING_MODELS`).
    threshold : float
        Fraction of the members that must agree for a galaxy to get a group.
    max_fit_samples : int or None
        Size of each bootstrap resample, at most the number of galaxies;
        bounds the cost of Ward linkage, which grows as the square of it.
        None resamples as many galaxies as there are.
    seed : int
        Seed of the resampling and of the models.
    name : str
        What to call the features in error messages.

    Returns
    -------
    VoteResult
        Members aligned to the consensus; group -1 for unclassified galaxies.

    Raises
    ------
    FeatureError
        For features that are not a finite 2-D matrix.
    ConfigError
        For K < 2 or larger than the sample, an unknown model, B < 1 or a
        threshold outside (0, 1].
    """
    matrix = check_features(features, name)
    n_galaxies = matrix.shape[0]
    check_n_clusters(n_clusters, n_galaxies, name)
    unknown = [m for m in models if m not in CLUSTERING_MODELS]
    if unknown or not models:
        raise ConfigError(
            f"voting models {list(models)}: choose one or more of {', '.join(CLUSTERING_MODELS)}"
        )
    if n_bootstrap < 1:
        raise ConfigError(f"voting clustering: n_bootstrap must be at least 1, got {n_bootstrap}")
    sample_size = n_galaxies if max_fit_samples is None else min(n_galaxies, int(max_fit_samples))
    sample_size = max(sample_size, n_clusters)
    rng = np.random.default_rng(seed)
    members = []
    for _ in range(n_bootstrap):
        rows = rng.choice(n_galaxies, size=sample_size, replace=True)
        for model in models:
            member_seed = int(rng.integers(2**31 - 1))
            members.append(cluster_member(model, matrix[rows], matrix, n_clusters, member_seed))
    return vote_aligned(np.stack(members), n_clusters, threshold)


def vote_aligned(member_labels: np.ndarray, n_clusters: int, threshold: float) -> VoteResult:
    """Align raw member clusterings and vote.

    Members are first matched to the first member, then, so that the
    reference is not one arbitrary clustering, matched again to the
    consensus of that first vote.

    Parameters
    ----------
    member_labels : ndarray of int
        (n_members, n_galaxies) raw labels in 0..K-1.
    n_clusters : int
        K.
    threshold : float
        Fraction of members required to classify.

    Returns
    -------
    VoteResult
    """
    members = np.asarray(member_labels)
    first_pass = np.stack([align_labels(m, members[0], n_clusters) for m in members])
    reference = consensus_vote(first_pass, n_clusters, threshold).votes.argmax(axis=1)
    aligned = np.stack([align_labels(m, reference, n_clusters) for m in members])
    return consensus_vote(aligned, n_clusters, threshold)


def score_groups(
    groups: np.ndarray, labels: np.ndarray, classified: np.ndarray | None = None
) -> dict[str, float]:
    """Compare groups with known classes.

    Parameters
    ----------
    groups : ndarray of int
        Group of each galaxy.
    labels : array_like
        True class of each galaxy (any hashable values).
    classified : ndarray of bool, optional
        Galaxies that received a group; the others are left out of purity,
        ARI and NMI.  Default: all.

    Returns
    -------
    dict
        ``fraction_classified``; ``purity`` (fraction of classified galaxies
        in their group's majority class); ``ari`` and ``nmi`` (adjusted Rand
        index and normalised mutual information on the classified galaxies).
        NaN for the last three when nothing is classified.
    """
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    groups = np.asarray(groups)
    labels = np.asarray(labels)
    if groups.shape != labels.shape:
        raise ConfigError(f"score_groups: {groups.size} groups for {labels.size} labels")
    keep = (
        np.ones(groups.shape, dtype=bool)
        if classified is None
        else np.asarray(classified, dtype=bool)
    )
    scores = {"fraction_classified": float(keep.mean())}
    if not keep.any():
        return scores | {"purity": np.nan, "ari": np.nan, "nmi": np.nan}
    kept_groups, kept_labels = groups[keep], labels[keep]
    _, class_index = np.unique(kept_labels, return_inverse=True)
    majority = sum(np.bincount(class_index[kept_groups == g]).max() for g in np.unique(kept_groups))
    scores["purity"] = float(majority / kept_groups.size)
    scores["ari"] = float(adjusted_rand_score(kept_labels, kept_groups))
    scores["nmi"] = float(normalized_mutual_info_score(kept_labels, kept_groups))
    return scores
