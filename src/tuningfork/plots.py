"""Figures shared by every stage: image mosaics, and the one way to save a figure.

Every plotting function of tuningfork draws on matplotlib objects the caller
may pass (``ax=`` for one panel, ``axes=`` or ``figure=`` for several) and
returns what it drew on, so it works in a notebook with any backend.  When
nothing is passed, a :class:`matplotlib.figure.Figure` is made directly,
never through pyplot: no global figure list to leak, and no backend to
choose, so importing or calling tuningfork never changes the user's
``matplotlib`` backend.  A function given an output path also saves the
figure there through :func:`save_figure`.

So their docstrings list these arguments in one entry such as
``path, ax : optional``: ``path`` (str or Path) is where to save the figure
as PNG, and ``ax`` (:class:`~matplotlib.axes.Axes`) or ``figure``
(:class:`~matplotlib.figure.Figure` or ``SubFigure``, empty) is what to draw
on, a new figure by default.  The value returned is that axes or figure.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .data.display import bands_to_rgb, display_rgb
from .data.writers import atomic_path
from .errors import TuningforkError

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure, SubFigure


def new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    """Return ``ax``, or the axes of a new pyplot-free figure of ``figsize`` inches.

    Parameters
    ----------
    ax : matplotlib.axes.Axes or None
        The caller's axes.
    figsize : (float, float)
        Size of the new figure when ``ax`` is None.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if ax is not None:
        return ax
    from matplotlib.figure import Figure

    return Figure(figsize=figsize).subplots()


def new_figure(figsize: tuple[float, float]) -> Figure:
    """Return a new figure made without pyplot (see the module notes).

    Parameters
    ----------
    figsize : (float, float)
        Width and height in inches.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.figure import Figure

    return Figure(figsize=figsize)


def save_figure(figure: Figure | SubFigure, path: str | Path, dpi: int = 110) -> Path:
    """Write a figure as PNG, atomically (an interrupted run leaves no half-written file).

    Parameters
    ----------
    figure : matplotlib.figure.Figure or SubFigure
        What to save; a sub-figure saves the figure that holds it.
    path : str or Path
        Output PNG.
    dpi : int
        Resolution.

    Returns
    -------
    Path
        The written PNG.
    """
    with atomic_path(path) as tmp:
        figure.figure.savefig(tmp, dpi=dpi, format="png")
    return Path(path)


def finish_figure(figure: Figure | SubFigure, own: bool, path: str | Path | None, dpi: int = 110) -> None:
    """Lay out a figure the plotting function made, and save it when given a path.

    Parameters
    ----------
    figure : matplotlib.figure.Figure or SubFigure
        The figure drawn on.
    own : bool
        The plotting function made the figure itself; only then is it laid
        out, since the caller's figure may hold other panels.
    path : str or Path or None
        Output PNG (see :func:`save_figure`); None saves nothing.
    dpi : int
        Resolution.
    """
    if own:
        figure.tight_layout()
    if path is not None:
        save_figure(figure, path, dpi=dpi)


def whole_rows(tiles: Sequence, titles: Sequence[str], ncols: int) -> tuple[list, list[str]]:
    """Pad mosaic tiles and their captions with blanks to whole rows of ``ncols``.

    Padding each group of tiles makes the next group start on a new row of
    :func:`mosaic`.

    Parameters
    ----------
    tiles : sequence
        Images (or None for a blank tile).
    titles : sequence of str
        One caption per tile.
    ncols : int
        Columns of the mosaic.

    Returns
    -------
    tiles, titles : list
        New lists, padded with None tiles and empty captions.
    """
    blanks = -len(tiles) % ncols
    return [*tiles, *[None] * blanks], [*titles, *[""] * blanks]


@contextmanager
def axes_to_draw(
    ax: Axes | None, figsize: tuple[float, float], path: str | Path | None, dpi: int = 110
) -> Iterator[Axes]:
    """Give the axes to draw one panel on; once drawn, lay out and save as the caller asked.

    Parameters
    ----------
    ax : matplotlib.axes.Axes or None
        The caller's axes; None makes a new figure (see :func:`new_axes`).
    figsize : (float, float)
        Size of the new figure when ``ax`` is None.
    path : str or Path or None
        Output PNG once the panel is drawn (see :func:`finish_figure`).
    dpi : int
        Resolution of the PNG.

    Yields
    ------
    matplotlib.axes.Axes
        The axes to draw on.
    """
    axis = new_axes(ax, figsize)
    yield axis
    finish_figure(axis.figure, ax is None, path, dpi=dpi)


def mosaic(
    images: Sequence[np.ndarray | None],
    path: str | Path | None = None,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    suptitle: str | None = None,
    tile_inches: float = 1.4,
    already_scaled: bool = False,
    *,
    figure: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """Draw a grid of galaxy images, one tile each.

    Parameters
    ----------
    images : sequence of ndarray or None
        Each (bands, H, W) or (H, W); sizes may differ.  ``None`` leaves a
        tile blank (to start a new group on a new row).
    path, figure : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    titles : sequence of str, optional
        One short caption per image.
    ncols : int, optional
        Columns of the grid; about square by default.
    suptitle : str, optional
        Title of the whole figure.
    tile_inches : float
        Size of one tile in inches (of a new figure).
    already_scaled : bool
        Images are already in [0, 1] (e.g. preprocessed); skip
        :func:`~tuningfork.data.display_rgb`'s percentile scaling and only clip.

    Returns
    -------
    matplotlib.figure.Figure or SubFigure

    Raises
    ------
    TuningforkError
        ``images`` is empty.
    """
    count = len(images)
    if count == 0:
        raise TuningforkError(f"{path or 'mosaic'}: no images to put in the mosaic")
    ncols = ncols or int(np.ceil(np.sqrt(count)))
    nrows = int(np.ceil(count / ncols))
    own = figure is None
    if own:
        figure = new_figure((ncols * tile_inches, nrows * tile_inches + (0.4 if suptitle else 0)))
    axes = figure.subplots(nrows, ncols, squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.set_axis_off()
        if index >= count or images[index] is None:
            continue
        image = np.asarray(images[index], dtype=np.float32)
        if already_scaled:
            shown = np.moveaxis(np.clip(np.nan_to_num(bands_to_rgb(image)), 0, 1), 0, -1)
        else:
            shown = display_rgb(image)
        axis.imshow(shown, origin="lower", interpolation="nearest")
        if titles is not None:
            axis.set_title(str(titles[index]), fontsize=7)
    if suptitle:
        figure.suptitle(suptitle, fontsize=9)
    finish_figure(figure, own, path, dpi=100)
    return figure


def preview_collection(
    collection,
    path: str | Path | None = None,
    n: int = 36,
    stretch: str = "asinh",
    size: int | None = None,
    group_by: str | None = None,
    seed: int = 0,
    *,
    figure: Figure | SubFigure | None = None,
) -> Figure | SubFigure:
    """Draw a mosaic of a random selection of a collection's galaxies.

    Parameters
    ----------
    collection : tuningfork.data.GalaxyCollection
        The data set.
    path, figure : optional
        Where to save and draw; see :mod:`tuningfork.plots`.
    n : int
        Galaxies to show in all, or per group when ``group_by`` is given.
    stretch : str
        Display stretch, one of the names :class:`~tuningfork.preprocessing.PreprocessConfig`
        accepts (``asinh``, ``linear``, ``sqrt``, ``log``).
    size : int, optional
        Resize every cutout to this many pixels (needed when sizes differ
        and useful to speed up big stamps).
    group_by : str, optional
        Catalog column; one row of the mosaic block per distinct value.
    seed : int
        Seed of the random selection, so a preview can be reproduced.

    Returns
    -------
    matplotlib.figure.Figure or SubFigure
    """
    from .errors import EmptyCatalogError, MissingColumnError
    from .preprocessing import PreprocessConfig, Preprocessor, typical_noise

    if len(collection) == 0:
        raise EmptyCatalogError(getattr(collection, "source", "collection"))
    # Soften the arcsinh at several times the sky noise (Lupton et al. 2004):
    # faint outskirts show while the noise stays dark.
    config = PreprocessConfig(output_size=size, stretch=stretch, normalisation="minmax",
                              subtract_background=True,
                              stretch_softening=10.0 * typical_noise(collection))
    preprocess = Preprocessor(config)
    rng = np.random.default_rng(seed)
    catalog = collection.catalog
    if group_by is not None and group_by not in catalog.colnames:
        raise MissingColumnError(getattr(collection, "source", "collection"), group_by, catalog.colnames)
    if group_by is None:
        groups = {None: np.arange(len(collection))}
    else:
        values = np.asarray(catalog[group_by]).astype(str)
        groups = {value: np.flatnonzero(values == value) for value in sorted(set(values))}
    ncols = min(n, 12, max(len(m) for m in groups.values())) if group_by else None
    images, titles = [], []
    for value, members in groups.items():
        chosen = np.sort(rng.choice(members, size=min(n, len(members)), replace=False))
        galaxies = [collection[int(index)] for index in chosen]
        group_images = [preprocess(galaxy.image) for galaxy in galaxies]
        group_titles = [f"{value}: {galaxy.id}" if value is not None else str(galaxy.id) for galaxy in galaxies]
        if ncols:
            group_images, group_titles = whole_rows(group_images, group_titles, ncols)
        images += group_images
        titles += group_titles
    return mosaic(images, path, titles=titles, ncols=ncols, already_scaled=True,
                  suptitle=f"{len(collection)} galaxies, {stretch} stretch", figure=figure)
