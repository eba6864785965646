"""Bagging voting clustering: many clusterings vote, only a consensus assigns a group.

B bootstrap resamples of the features are each clustered by M different
algorithms into K groups.  Every member then labels all galaxies; the
members' arbitrary label numbers are matched to a common reference with the
Hungarian algorithm, and a galaxy gets a group only when at least a
threshold fraction of the members put it there.  The others stay
unclassified: in the ConvNeXt voting-clustering paper about half of the
COSMOS galaxies, and the groups of the other half were much cleaner than a
single k-means.

:class:`VotingClustering` keeps the fitted members and their renumbering,
so the same vote assigns galaxies it was not fitted on, and saves to a
folder (JSON settings, ``.npz`` arrays) that loads without pickle.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..config import Serialisable
from ..errors import (
    ConfigError,
    CorruptFileError,
    FeatureError,
    MissingColumnError,
    MissingFileError,
    ModelError,
)
from .features import check_features

#: Clustering algorithms a voting member can use.
CLUSTERING_MODELS = ("kmeans", "ward", "gmm", "birch")
#: Columns of the group catalog.
GROUP_COLUMNS = ("id", "group", "classified", "vote_fraction", "second_group", "second_fraction")
# BIRCH merges points closer than this fraction of the data's rms spread
# into one subcluster: small enough to keep K groups apart, large enough to
# stay fast on 10^4 points.
_BIRCH_THRESHOLD_FRACTION = 0.1
# The two files of a saved VotingClustering: parameters, then learned arrays.
_VOTING_SETTINGS = "voting.json"
_VOTING_ARRAYS = "voting.npz"


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


def label_alignment(labels: np.ndarray, reference: np.ndarray, n_clusters: int) -> np.ndarray:
    """The renumbering of one clustering's groups that best matches a reference.

    It maximises the number of galaxies whose group agrees with the
    reference (Hungarian algorithm on the K x K contingency table).

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
        (K,) ``renumber`` such that ``renumber[labels]`` are the matched groups.
    """
    # Imported here: scipy.optimize takes half a second, paid by every process that imports the
    # command line (each Dask worker re-imports it as its main module) but only used when fitting.
    from scipy.optimize import linear_sum_assignment

    labels = np.asarray(labels, dtype=np.intp)
    reference = np.asarray(reference, dtype=np.intp)
    contingency = np.zeros((n_clusters, n_clusters), dtype=np.int64)
    np.add.at(contingency, (labels, reference), 1)
    own, matched = linear_sum_assignment(contingency, maximize=True)
    renumber = np.empty(n_clusters, dtype=np.intp)
    renumber[own] = matched
    return renumber


def align_labels(labels: np.ndarray, reference: np.ndarray, n_clusters: int) -> np.ndarray:
    """Renumber one clustering's groups to match a reference clustering.

    Parameters
    ----------
    labels, reference, n_clusters
        See :func:`label_alignment`.

    Returns
    -------
    ndarray of int
        A new array: ``labels`` renumbered (see :func:`label_alignment`).
    """
    labels = np.asarray(labels, dtype=np.intp)
    return label_alignment(labels, reference, n_clusters)[labels]


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


def _member_state(
    model: str, sample: np.ndarray, n_clusters: int, seed: int
) -> dict[str, np.ndarray]:
    """Fit one member on a sample and keep only the arrays that assign new rows.

    Plain arrays rather than the scikit-learn objects, so that a saved
    clustering is an ``.npz`` file that loads without pickle and does not
    depend on the scikit-learn version.
    """
    from sklearn.cluster import AgglomerativeClustering, Birch, KMeans
    from sklearn.mixture import GaussianMixture

    if model == "kmeans":
        kmeans = KMeans(n_clusters, n_init=3, random_state=seed).fit(sample)
        return {"centres": kmeans.cluster_centers_}
    if model == "gmm":
        mixture = GaussianMixture(
            n_clusters, covariance_type="full", reg_covar=1e-4, random_state=seed
        ).fit(sample)
        return {
            "weights": mixture.weights_,
            "means": mixture.means_,
            "precisions_cholesky": mixture.precisions_cholesky_,
        }
    if model == "ward":
        labels = AgglomerativeClustering(n_clusters, linkage="ward").fit_predict(sample)
        return {"centres": np.stack([sample[labels == g].mean(axis=0) for g in range(n_clusters)])}
    if model == "birch":
        spread = float(np.sqrt(sample.var(axis=0).sum()))
        birch = Birch(n_clusters=n_clusters, threshold=_BIRCH_THRESHOLD_FRACTION * spread)
        birch.fit(sample)
        return {"centres": birch.subcluster_centers_, "labels": birch.subcluster_labels_}
    raise ConfigError(
        f"unknown clustering model {model!r} (choose from {', '.join(CLUSTERING_MODELS)})"
    )


def _member_assign(model: str, state: dict[str, np.ndarray], features: np.ndarray) -> np.ndarray:
    """Raw labels of one fitted member for any rows (see :func:`cluster_member`)."""
    from sklearn.metrics import pairwise_distances_argmin

    if model == "gmm":
        # scikit-learn's full-covariance log density, term for term, so that
        # the groups equal GaussianMixture.predict.
        chol = state["precisions_cholesky"]
        log_det = np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(axis=1)
        squared = np.stack(
            [
                np.square(features @ chol[g] - state["means"][g] @ chol[g]).sum(axis=1)
                for g in range(chol.shape[0])
            ],
            axis=1,
        )
        log_prob = -0.5 * (features.shape[1] * np.log(2 * np.pi) + squared) + log_det
        return (log_prob + np.log(state["weights"])).argmax(axis=1)
    nearest = pairwise_distances_argmin(features, state["centres"])
    # BIRCH labels a row by the group of its nearest subcluster.
    return state["labels"][nearest] if model == "birch" else nearest


def cluster_member(
    model: str, sample: np.ndarray, features: np.ndarray, n_clusters: int, seed: int
) -> np.ndarray:
    """Fit one clustering model on a sample and label every galaxy.

    Parameters
    ----------
    model : {'kmeans', 'ward', 'gmm', 'birch'}
        k-means (nearest centre), agglomerative Ward linkage, Gaussian
        mixture (full covariance, most probable component) or BIRCH
        (group of the nearest subcluster).  Ward has no ``predict``: rows
        take the group of the nearest Ward centroid of the sample.
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
    return _member_assign(model, _member_state(model, sample, n_clusters, seed), features)


@dataclass(frozen=True)
class VotingSettings(Serialisable):
    """The parameters of a :class:`VotingClustering`, checked.

    Parameters
    ----------
    n_clusters : int
        Groups K of every member.
    n_bootstrap : int
        Bootstrap resamples B; there are B x len(models) members.
    models : tuple of str
        Clustering algorithms (see :data:`CLUSTERING_MODELS`).
    threshold : float
        Fraction of the members, in (0, 1], that must agree.
    max_fit_samples : int or None
        Size cap of each bootstrap resample.
    seed : int
        Seed of the resampling and of the members.
    """

    n_clusters: int = 20
    n_bootstrap: int = 10
    models: tuple[str, ...] = CLUSTERING_MODELS
    threshold: float = 0.5
    max_fit_samples: int | None = 5000
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "models", tuple(self.models))
        check_n_clusters(self.n_clusters, max(self.n_clusters, 2), "voting clustering")
        unknown = [m for m in self.models if m not in CLUSTERING_MODELS]
        if unknown or not self.models:
            raise ConfigError(
                f"voting models {list(self.models)}: choose one or more of "
                f"{', '.join(CLUSTERING_MODELS)}"
            )
        if self.n_bootstrap < 1:
            raise ConfigError(
                f"voting clustering: n_bootstrap must be at least 1, got {self.n_bootstrap}"
            )
        if not 0 < self.threshold <= 1:
            raise ConfigError(
                f"voting threshold must be a fraction in (0, 1], got {self.threshold}"
            )


# One place for the defaults of the estimator, its function form and the pipeline.
_DEFAULTS = VotingSettings()


class VotingClustering:
    """Bagging voting clustering as a scikit-learn-style estimator.

    ``fit`` clusters B bootstrap resamples with every model of ``models``
    and keeps each member's fitted state and its renumbering onto the
    consensus; ``predict`` lets the same members vote on rows never seen in
    ``fit``: each member labels the rows (k-means: nearest centre; Gaussian
    mixture: most probable component; BIRCH: group of the nearest
    subcluster; Ward linkage, which has no ``predict``: nearest centroid of
    its groups on the resample), the labels go through the stored
    renumbering, and the consensus threshold applies as in ``fit``.

    Parameters
    ----------
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

    Attributes
    ----------
    members_ : list of (str, dict)
        Each member's model name and fitted arrays.
    alignment_ : ndarray of int
        (n_members, K): ``alignment_[m][raw_label]`` is member m's vote.
    n_features_in_ : int
        Number of features seen in ``fit``.

    Examples
    --------
    >>> clustering = VotingClustering(3, n_bootstrap=2).fit(features)  # doctest: +SKIP
    >>> vote = clustering.predict(new_features)  # doctest: +SKIP
    >>> vote.group, vote.classified, vote.vote_fraction  # doctest: +SKIP
    """

    def __init__(
        self,
        n_clusters: int = _DEFAULTS.n_clusters,
        *,
        n_bootstrap: int = _DEFAULTS.n_bootstrap,
        models: Sequence[str] = _DEFAULTS.models,
        threshold: float = _DEFAULTS.threshold,
        max_fit_samples: int | None = _DEFAULTS.max_fit_samples,
        seed: int = _DEFAULTS.seed,
    ):
        self.n_clusters = n_clusters
        self.n_bootstrap = n_bootstrap
        self.models = models
        self.threshold = threshold
        self.max_fit_samples = max_fit_samples
        self.seed = seed

    @property
    def settings(self) -> VotingSettings:
        """The parameters, checked (raises :class:`ConfigError` when invalid)."""
        return VotingSettings(
            n_clusters=self.n_clusters,
            n_bootstrap=self.n_bootstrap,
            models=tuple(self.models),
            threshold=self.threshold,
            max_fit_samples=self.max_fit_samples,
            seed=self.seed,
        )

    def fit(self, features: np.ndarray, name: str = "features") -> VotingClustering:
        """Fit the members on bootstrap resamples of the features.

        Parameters
        ----------
        features : ndarray
            (n_galaxies, n_features), e.g. PCA components of encoder features.
        name : str
            What to call the features in error messages.

        Returns
        -------
        VotingClustering
            ``self``.

        Raises
        ------
        FeatureError
            For features that are not a finite 2-D matrix.
        ConfigError
            For K < 2 or larger than the sample, an unknown model, B < 1 or a
            threshold outside (0, 1].
        """
        self.fit_predict(features, name)
        return self

    def fit_predict(self, features: np.ndarray, name: str = "features") -> VoteResult:
        """Fit, and return the vote on the galaxies fitted.

        Parameters
        ----------
        features : ndarray
            (n_galaxies, n_features).
        name : str
            What to call the features in error messages.

        Returns
        -------
        VoteResult
            Members aligned to the consensus; group -1 for unclassified galaxies.
        """
        matrix = check_features(features, name)
        n_galaxies = matrix.shape[0]
        check_n_clusters(self.n_clusters, n_galaxies, name)
        settings = self.settings
        k = settings.n_clusters
        sample_size = (
            n_galaxies
            if settings.max_fit_samples is None
            else min(n_galaxies, int(settings.max_fit_samples))
        )
        sample_size = max(sample_size, k)
        rng = np.random.default_rng(settings.seed)
        members = []
        for _ in range(settings.n_bootstrap):
            rows = rng.choice(n_galaxies, size=sample_size, replace=True)
            for model in settings.models:
                member_seed = int(rng.integers(2**31 - 1))
                members.append((model, _member_state(model, matrix[rows], k, member_seed)))
        raw = np.stack([_member_assign(model, state, matrix) for model, state in members])
        self.members_ = members
        self.alignment_ = consensus_alignment(raw, k, settings.threshold)
        self.n_features_in_ = matrix.shape[1]
        return self._vote(raw)

    def predict(self, features: np.ndarray, name: str = "features") -> VoteResult:
        """Let the fitted members vote on galaxies, seen in ``fit`` or not.

        Parameters
        ----------
        features : ndarray
            (n_galaxies, n_features_in_), in the space the clustering was
            fitted in (e.g. the same PCA).
        name : str
            What to call the features in error messages.

        Returns
        -------
        VoteResult
            Group (-1 where unclassified), classified flag, vote fraction
            and runner-up of every row.

        Raises
        ------
        ModelError
            Before ``fit``.
        FeatureError
            For features that are not a finite 2-D matrix of
            ``n_features_in_`` columns.
        """
        if not hasattr(self, "members_"):
            raise ModelError("VotingClustering: call fit (or load) before predict")
        matrix = check_features(features, name)
        if matrix.shape[1] != self.n_features_in_:
            raise FeatureError(
                f"{name}: {matrix.shape[1]} features, the clustering was fitted on "
                f"{self.n_features_in_}"
            )
        return self._vote(np.stack([_member_assign(m, s, matrix) for m, s in self.members_]))

    def _vote(self, raw: np.ndarray) -> VoteResult:
        aligned = np.take_along_axis(self.alignment_, raw, axis=1)
        return consensus_vote(aligned, self.n_clusters, self.threshold)

    def save(self, folder: str | Path) -> Path:
        """Write the fitted clustering to a folder.

        ``voting.json`` holds the parameters (:class:`VotingSettings`) and
        ``voting.npz`` the alignment and every member's arrays, each written
        atomically; no pickle.

        Parameters
        ----------
        folder : str or Path
            Created if needed.

        Returns
        -------
        Path
            The folder.
        """
        from ..data.writers import atomic_path

        if not hasattr(self, "members_"):
            raise ModelError("VotingClustering: nothing to save before fit")
        folder = Path(folder)
        arrays = {"alignment": self.alignment_, "models": np.array([m for m, _ in self.members_])}
        for index, (_, state) in enumerate(self.members_):
            arrays.update({f"member{index}_{key}": value for key, value in state.items()})
        with atomic_path(folder / _VOTING_ARRAYS) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        with atomic_path(folder / _VOTING_SETTINGS) as tmp:
            tmp.write_text(self.settings.to_json())
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> VotingClustering:
        """Read a clustering written by :meth:`save`, ready to ``predict``.

        Parameters
        ----------
        folder : str or Path
            Folder holding ``voting.json`` and ``voting.npz``.

        Returns
        -------
        VotingClustering

        Raises
        ------
        MissingFileError, CorruptFileError, ConfigError
        """
        folder = Path(folder)
        settings_path, arrays_path = folder / _VOTING_SETTINGS, folder / _VOTING_ARRAYS
        for path, what in ((settings_path, "voting settings"), (arrays_path, "voting members")):
            if not path.is_file():
                raise MissingFileError(path, what)
        settings = VotingSettings.from_json(settings_path.read_text())
        clustering = cls(**asdict(settings))
        expected = list(settings.models) * settings.n_bootstrap
        try:
            with np.load(arrays_path, allow_pickle=False) as stored:
                models = [str(model) for model in stored["models"]]
                alignment = stored["alignment"].astype(np.intp)
                states = [{} for _ in models]
                for key in stored.files:
                    if key.startswith("member"):
                        index, _, field_name = key[len("member") :].partition("_")
                        states[int(index)][field_name] = stored[key]
        except (KeyError, ValueError, IndexError, OSError) as error:
            raise CorruptFileError(
                arrays_path, f"not a voting clustering ({type(error).__name__})"
            ) from None
        if models != expected or alignment.shape != (len(expected), settings.n_clusters):
            raise CorruptFileError(arrays_path, f"members do not match {settings_path.name}")
        clustering.members_ = list(zip(models, states, strict=True))
        clustering.alignment_ = alignment
        # Centres (k-means, Ward, BIRCH subclusters) and GMM means are both
        # (n, n_features).
        first = states[0]
        clustering.n_features_in_ = int(first.get("centres", first.get("means")).shape[1])
        return clustering


def voting_clustering(
    features: np.ndarray,
    n_clusters: int,
    *,
    n_bootstrap: int = _DEFAULTS.n_bootstrap,
    models: Sequence[str] = _DEFAULTS.models,
    threshold: float = _DEFAULTS.threshold,
    max_fit_samples: int | None = _DEFAULTS.max_fit_samples,
    seed: int = _DEFAULTS.seed,
    name: str = "features",
) -> VoteResult:
    """Cluster by bagging and voting: ``VotingClustering(...).fit_predict(features)``.

    Parameters
    ----------
    features : ndarray
        (n_galaxies, n_features), e.g. PCA components of encoder features.
    n_clusters, n_bootstrap, models, threshold, max_fit_samples, seed
        See :class:`VotingClustering`.
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
    return VotingClustering(
        n_clusters,
        n_bootstrap=n_bootstrap,
        models=models,
        threshold=threshold,
        max_fit_samples=max_fit_samples,
        seed=seed,
    ).fit_predict(features, name)


def consensus_alignment(member_labels: np.ndarray, n_clusters: int, threshold: float) -> np.ndarray:
    """The renumbering of every member onto the consensus.

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
    ndarray of int
        (n_members, K): row m renumbers member m's raw labels.
    """
    members = np.asarray(member_labels)
    first_pass = np.stack([align_labels(m, members[0], n_clusters) for m in members])
    reference = consensus_vote(first_pass, n_clusters, threshold).votes.argmax(axis=1)
    return np.stack([label_alignment(m, reference, n_clusters) for m in members])


def vote_aligned(member_labels: np.ndarray, n_clusters: int, threshold: float) -> VoteResult:
    """Align raw member clusterings (see :func:`consensus_alignment`) and vote.

    Parameters
    ----------
    member_labels, n_clusters, threshold
        See :func:`consensus_alignment`.

    Returns
    -------
    VoteResult
    """
    members = np.asarray(member_labels, dtype=np.intp)
    alignment = consensus_alignment(members, n_clusters, threshold)
    return consensus_vote(np.take_along_axis(alignment, members, axis=1), n_clusters, threshold)


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
