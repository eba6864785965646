"""Figures of the embedding tools: neighbour and outlier mosaics, probe curves.

Each draws on the caller's axes or figure (or a new pyplot-free one) and
returns it; given a path, it also saves the figure (see :mod:`tuningfork.plots`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from astropy.table import Table

from ..data import GalaxyCollection
from ..errors import ConfigError, InputFileError
from ..plots import axes_to_draw, mosaic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure


def _images_by_id(collection: GalaxyCollection, ids: list[str]) -> list[np.ndarray]:
    row_of = {galaxy_id: row for row, galaxy_id in enumerate(collection.ids)}
    missing = [galaxy_id for galaxy_id in ids if galaxy_id not in row_of]
    if missing:
        raise InputFileError(
            collection.name,
            f"{len(missing)} ids of the embeddings are not in this data set (e.g. '{missing[0]}')",
        )
    return [galaxy.image for galaxy in collection.subset([row_of[galaxy_id] for galaxy_id in ids])]


def neighbours_mosaic(
    collection: GalaxyCollection,
    neighbours: Table,
    path: str | Path | None = None,
    query_image: np.ndarray | None = None,
    *,
    figure: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """Mosaic of a query's nearest galaxies, nearest first.

    Parameters
    ----------
    collection : GalaxyCollection
        The data set the embeddings were made from (images are read by id).
    neighbours : astropy.table.Table
        From :meth:`SimilarityIndex.neighbours` (``id``, ``distance``).
    path, figure : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    query_image : ndarray, optional
        A query that is not in the collection (a new image), shown first.

    Returns
    -------
    matplotlib.figure.Figure or SubFigure
    """
    ids = [str(galaxy_id) for galaxy_id in neighbours["id"]]
    images = _images_by_id(collection, ids)
    titles = [
        f"{galaxy_id}\nd={distance:.3g}" for galaxy_id, distance in zip(ids, neighbours["distance"])
    ]
    if query_image is not None:
        images, titles = [query_image, *images], ["query", *titles]
    return mosaic(images, path, titles=titles, suptitle="nearest neighbours", figure=figure)


def outliers_mosaic(
    collection: GalaxyCollection,
    scores: Table,
    path: str | Path | None = None,
    top: int = 25,
    *,
    figure: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """Mosaic of the most anomalous galaxies.

    Parameters
    ----------
    collection : GalaxyCollection
        The data set the embeddings were made from.
    scores : astropy.table.Table
        From :func:`~tuningfork.embeddings.outliers.outlier_scores` (ranked).
    path, figure : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    top : int
        Galaxies shown.

    Returns
    -------
    matplotlib.figure.Figure or SubFigure
    """
    shown = scores[:top]
    ids = [str(galaxy_id) for galaxy_id in shown["id"]]
    titles = [f"#{rank} {galaxy_id}" for rank, galaxy_id in zip(shown["rank"], ids)]
    return mosaic(
        _images_by_id(collection, ids), path, titles=titles, suptitle=f"top {len(ids)} outliers",
        figure=figure,
    )


def probe_curves(
    results: Table,
    metric: str,
    path: str | Path | None = None,
    baseline: Table | None = None,
    *,
    ax: Axes | None = None,
) -> Axes:
    """Draw a probe metric against the fraction of labels used.

    Parameters
    ----------
    results : astropy.table.Table
        From :func:`~tuningfork.embeddings.probes.run_probes`.
    metric : str
        A metric column (``accuracy``, ``nmad``...); ``<metric>_std`` is drawn
        as error bars when present.
    path, ax : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    baseline : astropy.table.Table, optional
        Same columns (``fraction``, ``metric``) for a supervised model trained
        from scratch on the same labels, drawn dashed.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if metric not in results.colnames:
        raise ConfigError(
            f"probe results have no metric '{metric}' (columns: {', '.join(results.colnames)})"
        )
    with axes_to_draw(ax, (4.5, 3.2), path, dpi=120) as axis:
        curves = [
            (name, results[results["probe"] == name], "-o") for name in dict.fromkeys(results["probe"])
        ]
        if baseline is not None:
            curves.append(("supervised from scratch", baseline, "--s"))
        for name, rows, style in curves:
            rows = rows[np.argsort(rows["fraction"])]
            errors = rows[f"{metric}_std"] if f"{metric}_std" in rows.colnames else None
            axis.errorbar(
                100 * np.asarray(rows["fraction"]),
                rows[metric],
                yerr=errors,
                fmt=style,
                label=name,
                capsize=2,
            )
        axis.set_xscale("log")
        axis.set_xlabel("labels used (%)")
        axis.set_ylabel(metric.replace("_", " "))
        axis.legend(fontsize=8)
    return axis
