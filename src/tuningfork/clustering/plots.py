"""Figures of the clustering: group mosaics, morphology planes, embedding map, K sweep.

All figures are written atomically (temporary file, then rename) with
matplotlib's Agg backend.  Unclassified galaxies are drawn in grey.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..data.writers import atomic_path
from ..errors import ConfigError, MissingColumnError

UNCLASSIFIED_COLOUR = "0.75"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | Path) -> Path:
    plt = _pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)


def _scatter_by_group(
    axis, x: np.ndarray, y: np.ndarray, groups: np.ndarray, classified: np.ndarray
) -> None:
    plt = _pyplot()
    axis.scatter(
        x[~classified],
        y[~classified],
        s=6,
        c=UNCLASSIFIED_COLOUR,
        label="unclassified",
        linewidths=0,
    )
    present = np.unique(groups[classified])
    colours = plt.get_cmap("tab20", max(len(present), 1))
    for index, group in enumerate(present):
        members = classified & (groups == group)
        axis.scatter(
            x[members], y[members], s=8, color=colours(index), label=f"group {group}", linewidths=0
        )


def _legend(axis, n_groups: int) -> None:
    axis.legend(
        fontsize=6, markerscale=2, ncol=2 if n_groups > 10 else 1, loc="best", frameon=False
    )


def plot_group_mosaics(
    images: np.ndarray,
    groups: np.ndarray,
    classified: np.ndarray,
    path: str | Path,
    *,
    vote_fraction: np.ndarray | None = None,
    per_group: int = 8,
    ids: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """One mosaic with a row per group (and one of unclassified galaxies).

    Parameters
    ----------
    images : ndarray
        (n, bands, H, W) images in [0, 1] (preprocessed).
    groups : ndarray of int
        Group of each galaxy.
    classified : ndarray of bool
        Galaxies that received a group.
    path : str or Path
        Output PNG.
    vote_fraction : ndarray, optional
        Shows each group's most confident members first.
    per_group : int
        Galaxies shown per row.
    ids : sequence of str, optional
        Captions.
    title : str, optional
        Figure title; by default the number of galaxies classified.

    Returns
    -------
    Path
    """
    from ..plots import mosaic

    groups = np.asarray(groups)
    classified = np.asarray(classified, dtype=bool)
    order_key = -np.asarray(vote_fraction) if vote_fraction is not None else np.zeros(groups.size)
    rows = [(f"g{g}", classified & (groups == g)) for g in np.unique(groups[classified])]
    rows.append(("uncl.", ~classified))
    tiles, titles = [], []
    for label, members in rows:
        chosen = np.flatnonzero(members)
        chosen = chosen[np.argsort(order_key[chosen], kind="stable")][:per_group]
        if chosen.size == 0:
            continue
        for index in chosen:
            tiles.append(images[index])
            titles.append(f"{label} {ids[index]}" if ids is not None else label)
        tiles.extend([None] * (per_group - chosen.size))
        titles.extend([""] * (per_group - chosen.size))
    title = title or f"{int(classified.sum())} of {groups.size} galaxies classified"
    return mosaic(tiles, path, titles=titles, ncols=per_group, already_scaled=True, suptitle=title)


def plot_morphology_planes(
    morphometry, groups: np.ndarray, classified: np.ndarray, path: str | Path
) -> Path:
    """Gini-M20 and concentration-asymmetry planes coloured by group.

    The Gini-M20 panel shows the Lotz et al. (2008) lines that separate
    mergers (above ``G = -0.14 M20 + 0.33``) and early from late types
    (``G = 0.14 M20 + 0.80``).

    Parameters
    ----------
    morphometry : astropy.table.Table
        Rows aligned with ``groups``, with columns ``gini``, ``m20``,
        ``concentration`` and ``asymmetry`` (NaN rows are left out).
    groups : ndarray of int
        Group of each galaxy.
    classified : ndarray of bool
        Galaxies that received a group.
    path : str or Path
        Output PNG.

    Returns
    -------
    Path
    """
    for column in ("gini", "m20", "concentration", "asymmetry"):
        if column not in morphometry.colnames:
            raise MissingColumnError("morphometry table", column, morphometry.colnames)
    if len(morphometry) != len(groups):
        raise ConfigError(
            f"morphology planes: {len(morphometry)} morphometry rows for {len(groups)} galaxies"
        )
    plt = _pyplot()
    groups = np.asarray(groups)
    classified = np.asarray(classified, dtype=bool)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4))
    for axis, (x_name, y_name) in (
        (left, ("m20", "gini")),
        (right, ("asymmetry", "concentration")),
    ):
        x = np.asarray(morphometry[x_name], dtype=float)
        y = np.asarray(morphometry[y_name], dtype=float)
        finite = np.isfinite(x) & np.isfinite(y)
        _scatter_by_group(axis, x[finite], y[finite], groups[finite], classified[finite])
        axis.set_xlabel(x_name.upper() if x_name == "m20" else x_name)
        axis.set_ylabel(y_name)
    m20 = np.linspace(-3.0, 0.0, 50)
    left.plot(m20, -0.14 * m20 + 0.33, "k--", lw=0.8)
    left.plot(m20[m20 <= -1.68], (0.14 * m20 + 0.80)[m20 <= -1.68], "k:", lw=0.8)
    left.invert_xaxis()
    _legend(right, len(np.unique(groups[classified])))
    fig.tight_layout()
    return _save(fig, path)


def embedding_map(features: np.ndarray, method: str = "umap", seed: int = 0) -> np.ndarray:
    """Project features to 2-D for display.

    Parameters
    ----------
    features : ndarray
        (n_galaxies, n_features).
    method : {'umap', 'pca'}
        UMAP (umap-learn) or the first two principal components.
    seed : int
        Seed of UMAP.

    Returns
    -------
    ndarray
        (n_galaxies, 2).
    """
    matrix = np.asarray(features, dtype=np.float32)
    if method == "pca":
        from sklearn.decomposition import PCA

        return PCA(2, random_state=seed).fit_transform(matrix)
    if method == "umap":
        import umap

        neighbours = max(2, min(15, matrix.shape[0] - 1))
        return umap.UMAP(n_neighbors=neighbours, random_state=seed).fit_transform(matrix)
    raise ConfigError(f"embedding map: unknown method {method!r} (choose umap or pca)")


def plot_embedding_map(
    features: np.ndarray,
    groups: np.ndarray,
    classified: np.ndarray,
    path: str | Path,
    *,
    method: str = "umap",
    seed: int = 0,
) -> Path:
    """2-D map of the embeddings (UMAP by default) coloured by group.

    Parameters
    ----------
    features : ndarray
        (n_galaxies, n_features).
    groups : ndarray of int
        Group of each galaxy.
    classified : ndarray of bool
        Galaxies that received a group.
    path : str or Path
        Output PNG.
    method : {'umap', 'pca'}
        Projection (see :func:`embedding_map`).
    seed : int
        Seed of UMAP.

    Returns
    -------
    Path
    """
    plt = _pyplot()
    points = embedding_map(features, method, seed)
    classified = np.asarray(classified, dtype=bool)
    fig, axis = plt.subplots(figsize=(6, 5))
    _scatter_by_group(axis, points[:, 0], points[:, 1], np.asarray(groups), classified)
    axis.set_xlabel(f"{method} 1")
    axis.set_ylabel(f"{method} 2")
    _legend(axis, len(np.unique(np.asarray(groups)[classified])))
    fig.tight_layout()
    return _save(fig, path)


def plot_sweep(table, path: str | Path) -> Path:
    """Silhouette, BIC, consensus stability and fraction classified against K.

    Parameters
    ----------
    table : astropy.table.Table
        Output of :func:`~tuningfork.clustering.sweep.sweep_k`.
    path : str or Path
        Output PNG.

    Returns
    -------
    Path
    """
    plt = _pyplot()
    panels = (
        ("silhouette", "silhouette"),
        ("bic", "BIC"),
        ("stability_ari", "stability (ARI)"),
        ("fraction_classified", "fraction classified"),
    )
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3))
    for axis, (column, label) in zip(axes, panels):
        axis.plot(table["k"], table[column], "o-")
        axis.set_xlabel("K")
        axis.set_ylabel(label)
    fig.tight_layout()
    return _save(fig, path)
