"""Few-label probes: how much a frozen embedding knows about a label.

A probe is a small model (logistic or ridge regression, or k nearest
neighbours) fitted on the embeddings of a fraction of the labelled galaxies
and scored on held-out galaxies.  Good embeddings reach high scores with 1 %
of the labels; comparing the same label subsets with a supervised network
trained from scratch (:func:`label_subsets` gives them) shows what the
pretraining is worth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from astropy.table import Table

from ..errors import ConfigError

PROBES = ("linear", "knn")
#: |dz| / (1 + z) above which a photometric redshift counts as an outlier
#: (the usual photo-z convention, e.g. Euclid and LSST requirements).
PHOTOZ_OUTLIER = 0.15


def regression_metrics(
    truth: np.ndarray,
    predicted: np.ndarray,
    redshift_like: bool = True,
    outlier_threshold: float = PHOTOZ_OUTLIER,
) -> dict[str, float]:
    """Photo-z style scores of a numeric prediction.

    Parameters
    ----------
    truth, predicted : ndarray
        (n,) true and predicted values (e.g. redshift, or log stellar mass in dex).
    redshift_like : bool
        Divide residuals by 1 + truth, as for redshifts; use False for targets
        such as log stellar mass, where plain residuals are meaningful.
    outlier_threshold : float
        Residual (normalised as above) beyond which a prediction is an outlier.

    Returns
    -------
    dict
        ``nmad`` (1.4826 x median absolute deviation of the residuals),
        ``outlier_fraction``, ``rmse`` and ``bias`` (median residual).
    """
    truth = np.asarray(truth, dtype=np.float64)
    residual = np.asarray(predicted, dtype=np.float64) - truth
    if redshift_like:
        residual = residual / (1.0 + truth)
    bias = float(np.median(residual))
    return {
        "nmad": float(1.4826 * np.median(np.abs(residual - bias))),
        "outlier_fraction": float(np.mean(np.abs(residual) > outlier_threshold)),
        "rmse": float(np.sqrt(np.mean(residual**2))),
        "bias": bias,
    }


def classification_metrics(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 of class predictions.

    Parameters
    ----------
    truth, predicted : ndarray
        (n,) class labels.

    Returns
    -------
    dict
        ``accuracy``, ``balanced_accuracy``, ``macro_f1``.
    """
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, average="macro")),
    }


def label_subsets(
    labels: np.ndarray,
    train_rows: np.ndarray,
    fraction: float,
    repeats: int = 1,
    classification: bool = True,
    seed: int = 0,
) -> list[np.ndarray]:
    """Random subsets of the training rows that keep a given fraction of labels.

    Classes are sampled in proportion (stratified) and each class keeps at
    least one galaxy, so a 1 % subset of a small set still has every class.

    Parameters
    ----------
    labels : ndarray
        (n,) labels of every galaxy.
    train_rows : ndarray
        Rows that may be used for training.
    fraction : float
        Fraction in (0, 1] of ``train_rows`` to keep.
    repeats : int
        Number of independent subsets.
    classification : bool
        Stratify by class.
    seed : int
        Seed of the first subset; subset ``r`` uses ``seed + r``.

    Returns
    -------
    list of ndarray
        ``repeats`` arrays of rows (sorted).
    """
    if not 0 < fraction <= 1:
        raise ConfigError(f"label fraction must be in (0, 1], got {fraction}")
    train_rows = np.asarray(train_rows)
    subsets = []
    for repeat in range(repeats):
        rng = np.random.default_rng(seed + repeat)
        if fraction == 1:
            subsets.append(np.sort(train_rows))
            continue
        if not classification:
            keep = max(2, round(fraction * len(train_rows)))
            subsets.append(
                np.sort(rng.choice(train_rows, size=min(keep, len(train_rows)), replace=False))
            )
            continue
        chosen = []
        for value in np.unique(labels[train_rows]):
            members = train_rows[labels[train_rows] == value]
            keep = max(1, round(fraction * len(members)))
            chosen.append(rng.choice(members, size=keep, replace=False))
        subsets.append(np.sort(np.concatenate(chosen)))
    return subsets


def _make_probe(name: str, classification: bool, n_train: int, n_neighbors: int):
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    if name == "linear":
        model = LogisticRegression(max_iter=2000) if classification else Ridge(alpha=1.0)
    else:
        neighbours = max(1, min(n_neighbors, n_train))
        model = (
            KNeighborsClassifier(neighbours) if classification else KNeighborsRegressor(neighbours)
        )
    # Embedding dimensions have arbitrary scales; standardising makes the
    # regularisation strength and the kNN distance treat them alike.
    return make_pipeline(StandardScaler(), model)


def run_probes(
    vectors: np.ndarray,
    labels: np.ndarray,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    fractions: Sequence[float] = (0.01, 0.1, 1.0),
    probes: Sequence[str] = PROBES,
    task: str = "auto",
    redshift_like: bool = True,
    repeats: int = 1,
    n_neighbors: int = 10,
    seed: int = 0,
) -> Table:
    """Fit probes on fractions of the labels and score them on held-out rows.

    Parameters
    ----------
    vectors : ndarray
        (n, dim) embeddings.
    labels : ndarray
        (n,) class names or numbers; for regression, NaN marks a missing value
        and such rows are left out.
    train_rows, test_rows : ndarray
        Disjoint rows for fitting and scoring.
    fractions : sequence of float
        Label fractions of ``train_rows`` to fit on, each in (0, 1].
    probes : sequence of {"linear", "knn"}
        ``linear`` is logistic regression (classes) or ridge (numbers).
    task : {"auto", "classification", "regression"}
        ``auto`` is regression for a floating-point label column.
    redshift_like : bool
        Regression residuals are divided by 1 + truth (photo-z convention).
    repeats : int
        Independent label subsets per fraction; metrics are averaged and their
        standard deviation reported.
    n_neighbors : int
        k of the kNN probe (capped at the number of labels).
    seed : int
        Seed of the label subsets.

    Returns
    -------
    astropy.table.Table
        One row per probe and fraction: ``probe``, ``fraction``, ``n_labels``,
        then each metric and ``<metric>_std``.
    """
    vectors = np.asarray(vectors, dtype=np.float32)
    labels = np.asarray(labels)
    if vectors.ndim != 2 or len(labels) != len(vectors):
        raise ConfigError(
            f"probes need one label per embedding: got {len(labels)} labels for {vectors.shape}"
        )
    unknown = [name for name in probes if name not in PROBES]
    if unknown:
        raise ConfigError(f"probes {unknown} unknown (choose from {', '.join(PROBES)})")
    if task == "auto":
        task = "regression" if labels.dtype.kind == "f" else "classification"
    if task not in ("classification", "regression"):
        raise ConfigError(f"probe task '{task}' is unknown (choose classification or regression)")
    classification = task == "classification"
    train_rows, test_rows = np.asarray(train_rows), np.asarray(test_rows)
    if not classification:
        finite = np.isfinite(labels.astype(np.float64))
        train_rows, test_rows = train_rows[finite[train_rows]], test_rows[finite[test_rows]]
    if len(train_rows) == 0 or len(test_rows) == 0:
        raise ConfigError(
            "probes need labelled training and test galaxies, "
            f"got {len(train_rows)} and {len(test_rows)}"
        )
    if classification and len(np.unique(labels[train_rows])) < 2:
        raise ConfigError(
            "a classification probe needs at least two classes among the training labels"
        )

    rows = []
    for fraction in fractions:
        subsets = label_subsets(labels, train_rows, fraction, repeats, classification, seed)
        for name in probes:
            scores = []
            for subset in subsets:
                if classification and len(np.unique(labels[subset])) < 2:
                    continue
                probe = _make_probe(name, classification, len(subset), n_neighbors)
                probe.fit(vectors[subset], labels[subset])
                predicted = probe.predict(vectors[test_rows])
                scores.append(
                    classification_metrics(labels[test_rows], predicted)
                    if classification
                    else regression_metrics(labels[test_rows], predicted, redshift_like)
                )
            if not scores:
                continue
            row = {
                "probe": name,
                "fraction": float(fraction),
                "n_labels": int(np.mean([len(s) for s in subsets])),
            }
            for metric in scores[0]:
                values = [score[metric] for score in scores]
                row[metric] = float(np.mean(values))
                row[f"{metric}_std"] = float(np.std(values))
            rows.append(row)
    return Table(rows=rows)


def chance_accuracy(labels: np.ndarray) -> float:
    """Accuracy of always predicting the most common class (the bar a probe must beat)."""
    _, counts = np.unique(np.asarray(labels), return_counts=True)
    return float(counts.max() / counts.sum())


def split_rows(
    catalog,
    count: int,
    split_column: str | None = "split",
    test_fraction: float = 0.3,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Training and test rows: from a split column when there is one, else at random.

    Parameters
    ----------
    catalog : astropy.table.Table
        Rows aligned with the embeddings.
    count : int
        Number of rows.
    split_column : str, optional
        Column whose ``train`` rows train and whose other rows (``val``,
        ``test``...) test; ignored when absent.
    test_fraction : float
        Share of rows held out when there is no split column.
    seed : int
        Seed of the random split.

    Returns
    -------
    train_rows, test_rows : ndarray of int
    """
    if split_column and split_column in catalog.colnames:
        is_train = np.array(
            [str(value).strip().lower() == "train" for value in catalog[split_column]]
        )
        return np.flatnonzero(is_train), np.flatnonzero(~is_train)
    if not 0 < test_fraction < 1:
        raise ConfigError(f"test fraction must be in (0, 1), got {test_fraction}")
    rows = np.random.default_rng(seed).permutation(count)
    n_test = max(1, round(test_fraction * count))
    return np.sort(rows[n_test:]), np.sort(rows[:n_test])


def probe_catalog(
    embeddings,
    catalog,
    column: str,
    split_column: str | None = "split",
    test_fraction: float = 0.3,
    seed: int = 0,
    **probe_options,
) -> Table:
    """Run :func:`run_probes` on embeddings with labels from a catalog, matched by id.

    Parameters
    ----------
    embeddings : EmbeddingSet
        The embeddings.
    catalog : astropy.table.Table
        With an ``id`` column (as :func:`tuningfork.data.read_catalog` gives)
        and the label ``column``; galaxies missing on either side are left out.
    column : str
        Class or numeric column to predict.
    split_column : str, optional
        See :func:`split_rows`.
    test_fraction : float
        See :func:`split_rows`.
    seed : int
        Seed of the split and the label subsets.
    **probe_options
        Passed to :func:`run_probes` (``fractions``, ``probes``, ``task``...).

    Returns
    -------
    astropy.table.Table
        As :func:`run_probes`.
    """
    from ..errors import CatalogError, MissingColumnError

    source = embeddings.path or "embeddings"
    if column not in catalog.colnames:
        raise MissingColumnError(source, column, catalog.colnames)
    row_of = {str(galaxy_id): row for row, galaxy_id in enumerate(catalog["id"])}
    matched = [
        (position, row_of[galaxy_id])
        for position, galaxy_id in enumerate(embeddings.ids)
        if galaxy_id in row_of
    ]
    if not matched:
        raise CatalogError(f"{source}: none of its {len(embeddings)} ids is in the catalog")
    positions, rows = (np.array(values) for values in zip(*matched))
    labels = catalog[column][rows]
    labels = (
        np.ma.filled(labels, np.nan) if labels.dtype.kind == "f" else np.asarray(labels).astype(str)
    )
    train, test = split_rows(catalog[rows], len(rows), split_column, test_fraction, seed)
    return run_probes(
        np.asarray(embeddings.vectors)[positions], labels, train, test, seed=seed, **probe_options
    )
