"""Figures of the clustering: group mosaics, morphology planes, embedding map, K sweep.

Each draws on the caller's axes (or a new pyplot-free figure) and returns
them; given a path, it also saves the figure atomically (see
:mod:`tuningfork.plots`).  Unclassified galaxies are drawn in grey.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ConfigError, MissingColumnError
from ..plots import axes_to_draw, finish_figure, mosaic, new_figure, whole_rows

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure

UNCLASSIFIED_COLOUR = "0.75"


def _panels(axes: Sequence[Axes] | None, count: int, figsize: tuple[float, float]) -> tuple[list[Axes], bool]:
    """The caller's ``count`` axes, or those of a new one-row figure; and whether the figure is ours."""
    if axes is None:
        return list(np.atleast_1d(new_figure(figsize).subplots(1, count))), True
    axes = list(np.ravel(axes))
    if len(axes) != count:
        raise ConfigError(f"this figure has {count} panels, but {len(axes)} axes were given")
    return axes, False


def _scatter_by_group(
    axis: Axes, x: np.ndarray, y: np.ndarray, groups: np.ndarray, classified: np.ndarray
) -> None:
    from matplotlib import colormaps

    axis.scatter(
        x[~classified],
        y[~classified],
        s=6,
        c=UNCLASSIFIED_COLOUR,
        label="unclassified",
        linewidths=0,
    )
    present = np.unique(groups[classified])
    colours = colormaps["tab20"].resampled(max(len(present), 1))
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
    path: str | Path | None = None,
    *,
    vote_fraction: np.ndarray | None = None,
    per_group: int = 8,
    ids: Sequence[str] | None = None,
    title: str | None = None,
    figure: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """One mosaic with a row per group (and one of unclassified galaxies).

    Parameters
    ----------
    images : ndarray
        (n, bands, H, W) images in [0, 1] (preprocessed).
    groups, classified : ndarray
        Group of each galaxy (int), and whether it received one (bool).
    path, figure : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
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
    matplotlib.figure.Figure or SubFigure
    """
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
        row_tiles, row_titles = whole_rows(
            [images[index] for index in chosen],
            [f"{label} {ids[index]}" if ids is not None else label for index in chosen],
            per_group,
        )
        tiles += row_tiles
        titles += row_titles
    title = title or f"{int(classified.sum())} of {groups.size} galaxies classified"
    return mosaic(tiles, path, titles=titles, ncols=per_group, already_scaled=True, suptitle=title,
                  figure=figure)


def plot_morphology_planes(
    morphometry,
    groups: np.ndarray,
    classified: np.ndarray,
    path: str | Path | None = None,
    *,
    axes: Sequence[Axes] | None = None,
) -> Figure | SubFigure:
    """Gini-M20 and concentration-asymmetry planes coloured by group.

    The Gini-M20 panel shows the Lotz et al. (2008) lines that separate
    mergers (above ``G = -0.14 M20 + 0.33``) and early from late types
    (``G = 0.14 M20 + 0.80``).

    Parameters
    ----------
    morphometry : astropy.table.Table
        Rows aligned with ``groups``, with columns ``gini``, ``m20``,
        ``concentration`` and ``asymmetry`` (NaN rows are left out).
    groups, classified : ndarray
        Group of each galaxy (int), and whether it received one (bool).
    path, axes : optional
        Where to save and draw (see :mod:`tuningfork.plots`); ``axes`` are
        the Gini-M20 and concentration-asymmetry panels.

    Returns
    -------
    matplotlib.figure.Figure or SubFigure
        The figure holding the panels.
    """
    for column in ("gini", "m20", "concentration", "asymmetry"):
        if column not in morphometry.colnames:
            raise MissingColumnError("morphometry table", column, morphometry.colnames)
    if len(morphometry) != len(groups):
        raise ConfigError(
            f"morphology planes: {len(morphometry)} morphometry rows for {len(groups)} galaxies"
        )
    groups = np.asarray(groups)
    classified = np.asarray(classified, dtype=bool)
    (left, right), own = _panels(axes, 2, (10, 4.4))
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
    finish_figure(left.figure, own, path)
    return left.figure


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
        with warnings.catch_warnings():
            # A seed makes UMAP single-threaded, and says so each time; the
            # reproducible map is the point of passing one.
            warnings.filterwarnings("ignore", message="n_jobs value .* overridden", category=UserWarning)
            return umap.UMAP(n_neighbors=neighbours, random_state=seed).fit_transform(matrix)
    raise ConfigError(f"embedding map: unknown method {method!r} (choose umap or pca)")


def plot_embedding_map(
    features: np.ndarray,
    groups: np.ndarray,
    classified: np.ndarray,
    path: str | Path | None = None,
    *,
    method: str = "umap",
    seed: int = 0,
    ax: Axes | None = None,
) -> Axes:
    """2-D map of the embeddings (UMAP by default) coloured by group.

    Parameters
    ----------
    features : ndarray
        (n_galaxies, n_features).
    groups, classified : ndarray
        Group of each galaxy (int), and whether it received one (bool).
    path, ax : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    method : {'umap', 'pca'}
        Projection (see :func:`embedding_map`).
    seed : int
        Seed of UMAP.

    Returns
    -------
    matplotlib.axes.Axes
    """
    points = embedding_map(features, method, seed)
    classified = np.asarray(classified, dtype=bool)
    with axes_to_draw(ax, (6, 5), path) as axis:
        _scatter_by_group(axis, points[:, 0], points[:, 1], np.asarray(groups), classified)
        axis.set_xlabel(f"{method} 1")
        axis.set_ylabel(f"{method} 2")
        _legend(axis, len(np.unique(np.asarray(groups)[classified])))
    return axis


def plot_sweep(
    table, path: str | Path | None = None, *, axes: Sequence[Axes] | None = None
) -> Figure | SubFigure:
    """Silhouette, BIC, consensus stability and fraction classified against K.

    Parameters
    ----------
    table : astropy.table.Table
        Output of :func:`~tuningfork.clustering.sweep.sweep_k`.
    path, axes : optional
        Where to save and draw (see :mod:`tuningfork.plots`); ``axes`` are
        the four panels, in the order above.

    Returns
    -------
    matplotlib.figure.Figure or SubFigure
        The figure holding the panels.
    """
    panels = (
        ("silhouette", "silhouette"),
        ("bic", "BIC"),
        ("stability_ari", "stability (ARI)"),
        ("fraction_classified", "fraction classified"),
    )
    axes, own = _panels(axes, len(panels), (3.2 * len(panels), 3))
    for axis, (column, label) in zip(axes, panels):
        axis.plot(table["k"], table[column], "o-")
        axis.set_xlabel("K")
        axis.set_ylabel(label)
    finish_figure(axes[0].figure, own, path)
    return axes[0].figure
