"""Figures shared by every stage: image mosaics and display scaling.

Plots are written with matplotlib's Agg backend (no screen needed) and through
:func:`tuningfork.data.writers.atomic_path`, so an interrupted run never
leaves a half-written PNG in place of a good one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .data.writers import atomic_path


def bands_to_rgb(image: np.ndarray) -> np.ndarray:
    """Map (bands, H, W), bands ordered blue to red, to (3, H, W) red first.

    One band becomes grey; two bands fill red and blue with their mean as
    green; of three or more, the reddest three are used (i, r, g of
    g, r, i, z as red, green, blue, as in SDSS composites).
    """
    array = np.asarray(image, dtype=np.float32)
    if array.ndim == 2:
        array = array[None]
    if array.shape[0] >= 3:
        return array[-3:][::-1]
    if array.shape[0] == 2:
        return np.stack([array[1], array.mean(axis=0), array[0]])
    return np.repeat(array, 3, axis=0)


def display_rgb(image: np.ndarray, softening: float = 0.02, clip_percentile: float = 99.5) -> np.ndarray:
    """Turn a (bands, H, W) image into an (H, W, 3) array in [0, 1] for display.

    Bands are mapped to colours by :func:`bands_to_rgb`.  Pixels are scaled by a per-image percentile and stretched
    with an arcsinh, which shows faint outskirts without saturating cores.

    Parameters
    ----------
    image : ndarray
        (bands, H, W) or (H, W) array in any units.
    softening : float
        Arcsinh softening relative to the clipped maximum; smaller values
        stretch the faint end harder.
    clip_percentile : float
        Percentile of the finite pixels mapped to white.

    Returns
    -------
    ndarray
        float32 (H, W, 3) in [0, 1]; non-finite pixels are black.
    """
    rgb = bands_to_rgb(image)
    finite = np.isfinite(rgb)
    if not finite.any():
        return np.zeros(rgb.shape[1:] + (3,), dtype=np.float32)
    values = rgb[finite]
    # The median is the sky in a cutout, so the sky shows dark, not grey.
    low = np.median(values)
    high = np.percentile(values, clip_percentile)
    scale = max(high - low, np.finfo(np.float32).tiny)
    scaled = np.where(finite, (rgb - low) / scale, 0.0)
    stretched = np.arcsinh(np.clip(scaled, 0.0, None) / softening) / np.arcsinh(1.0 / softening)
    return np.clip(np.moveaxis(stretched, 0, -1), 0.0, 1.0).astype(np.float32)


def mosaic(
    images: Sequence[np.ndarray],
    path: str | Path,
    titles: Sequence[str] | None = None,
    ncols: int | None = None,
    suptitle: str | None = None,
    tile_inches: float = 1.4,
    already_scaled: bool = False,
) -> Path:
    """Save a grid of galaxy images as one PNG.

    Parameters
    ----------
    images : sequence of ndarray or None
        Each (bands, H, W) or (H, W); sizes may differ.  ``None`` leaves a
        tile blank (to start a new group on a new row).
    path : str or Path
        Output PNG.
    titles : sequence of str, optional
        One short caption per image.
    ncols : int, optional
        Columns of the grid; about square by default.
    suptitle : str, optional
        Title of the whole figure.
    tile_inches : float
        Size of one tile in inches.
    already_scaled : bool
        Images are already in [0, 1] (e.g. preprocessed); skip
        :func:`display_rgb`'s percentile scaling and only clip.

    Returns
    -------
    Path
        The written PNG.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    count = len(images)
    if count == 0:
        from .errors import TuningforkError

        raise TuningforkError(f"{path}: no images to put in the mosaic")
    ncols = ncols or int(np.ceil(np.sqrt(count)))
    nrows = int(np.ceil(count / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(ncols * tile_inches, nrows * tile_inches + (0.4 if suptitle else 0)),
        squeeze=False,
    )
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
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return Path(path)


def preview_collection(
    collection,
    path: str | Path,
    n: int = 36,
    stretch: str = "asinh",
    size: int | None = None,
    group_by: str | None = None,
    seed: int = 0,
) -> Path:
    """Save a mosaic of a random selection of a collection's galaxies.

    Parameters
    ----------
    collection : tuningfork.data.GalaxyCollection
        The data set.
    path : str or Path
        Output PNG.
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
    Path
        The written PNG.
    """
    from .errors import MissingColumnError
    from .preprocessing import PreprocessConfig, Preprocessor, typical_noise

    if len(collection) == 0:
        from .errors import EmptyCatalogError

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
        for index in chosen:
            galaxy = collection[int(index)]
            images.append(preprocess(galaxy.image))
            titles.append(f"{value}: {galaxy.id}" if value is not None else str(galaxy.id))
        if ncols:
            # Pad each group to whole rows so that every group starts a new row.
            blanks = -len(chosen) % ncols
            images.extend([None] * blanks)
            titles.extend([""] * blanks)
    return mosaic(images, path, titles=titles, ncols=ncols, already_scaled=True,
                  suptitle=f"{len(collection)} galaxies, {stretch} stretch")
