"""From a GalaxyCollection to training arrays: targets, splits and the crop.

Cutouts for classification are small (a 64-pixel, 3-band image is 48 kB),
so the preprocessed images of a training run are read once, through the
collection's batches and the model's :class:`~tuningfork.preprocessing.Preprocessor`,
and kept in memory (:class:`~tuningfork.training.module.GalaxyDataModule`); augmentation then runs on whole batches in the
LightningModule, on whatever device trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..config import Serialisable
from ..data import GalaxyCollection
from ..errors import CatalogError, ConfigError, MissingColumnError, ModelError
from .trees import get_tree

#: Values of a split column, by the role they name.
SPLIT_NAMES = {"train": ("train", "training"), "val": ("val", "valid", "validation"), "test": ("test",)}


#: The fields of a :class:`Target` that apply to each kind.
_TARGET_FIELDS = {"classes": ("kind", "column", "class_names"), "votes": ("kind", "tree", "loss")}


@dataclass
class Target(Serialisable):
    """What a model learns.

    Parameters
    ----------
    kind : {"classes", "votes"}
        Class labels from one column, or Galaxy Zoo votes over a tree.
    column : str, optional
        The label column (classes).
    class_names : list of str
        Class names in output order (classes).
    tree : str, optional
        Decision tree name (votes).
    loss : str, optional
        ``"dirichlet"`` (vote counts) or ``"mse"`` (fractions) (votes).
    """

    kind: str
    column: str | None = None
    class_names: list[str] = field(default_factory=list)
    tree: str | None = None
    loss: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in _TARGET_FIELDS:
            raise ConfigError(f"target kind must be one of {', '.join(_TARGET_FIELDS)}, got {self.kind!r}")

    def to_dict(self) -> dict:
        """The target as stored in a model folder's config.

        Returns
        -------
        dict
            Only the fields of its kind, so that a folder's config keeps the
            form it has always had; :meth:`from_dict` reads it back.
        """
        settings = super().to_dict()
        return {name: settings[name] for name in _TARGET_FIELDS[self.kind]}

    @property
    def num_outputs(self) -> int:
        """Number of network outputs this target needs."""
        return len(self.class_names) if self.kind == "classes" else get_tree(self.tree).num_answers


def open_collection(data: str | Path | GalaxyCollection, label_column: str | None = None) -> GalaxyCollection:
    """Return ``data`` itself if it is a collection, else open it.

    Parameters
    ----------
    data : str, Path or GalaxyCollection
        Anything :meth:`GalaxyCollection.open` accepts (catalog, HDF5 file such
        as Galaxy10, NPY/NPZ stack, folder).
    label_column : str, optional
        Label column to recognise when opening.

    Returns
    -------
    GalaxyCollection
    """
    if isinstance(data, GalaxyCollection):
        return data
    return GalaxyCollection.open(data, label_column=label_column)


def class_codes(collection: GalaxyCollection, column: str, class_names: list[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Integer class codes of a label column.

    Parameters
    ----------
    collection : GalaxyCollection
        The data.
    column : str
        Label column.
    class_names : list of str, optional
        A model's classes; labels outside them raise :class:`ModelError`.
        By default the sorted distinct labels of the column.

    Returns
    -------
    codes : ndarray of int64
    class_names : list of str
    """
    if column not in collection.catalog.colnames:
        raise MissingColumnError(collection.name, column, collection.catalog.colnames)
    values = collection.catalog[column]
    missing = np.ma.getmaskarray(values) if hasattr(values, "mask") else np.zeros(len(values), bool)
    if missing.any():
        raise CatalogError(f"{collection.name}: {int(missing.sum())} rows of '{column}' have no label")
    labels = [str(value) for value in values.tolist()]
    if class_names is None:
        class_names = sorted(set(labels))
        if len(class_names) < 2:
            raise CatalogError(f"{collection.name}: column '{column}' holds a single class ({class_names[0]!r})")
    unknown = sorted(set(labels) - set(class_names))
    if unknown:
        raise ModelError(
            f"{collection.name}: classes {', '.join(unknown)} of column '{column}' are not among the model's "
            f"classes ({', '.join(class_names)})"
        )
    code_of = {name: code for code, name in enumerate(class_names)}
    return np.array([code_of[label] for label in labels], dtype=np.int64), list(class_names)


def vote_table(collection: GalaxyCollection, tree_name: str, loss: str | None = None) -> tuple[np.ndarray, str]:
    """Read a tree's vote columns: counts for the Dirichlet loss, else fractions.

    Parameters
    ----------
    collection : GalaxyCollection
        The data, with one column per answer of the tree.
    tree_name : str
        Decision tree name.
    loss : {"dirichlet", "mse"}, optional
        Force a loss; by default ``"dirichlet"`` when count columns are
        present and ``"mse"`` otherwise.

    Returns
    -------
    votes : ndarray
        (n_galaxies, tree.num_answers) float32: counts (``"dirichlet"``, NaN
        read as 0) or per-question fractions (``"mse"``, NaN where a question
        was not answered).
    loss : str
        The loss these votes are for.
    """
    from .losses import VOTE_LOSSES

    tree = get_tree(tree_name)
    if loss not in (None, *VOTE_LOSSES):
        raise ConfigError(f"unknown vote loss '{loss}' (choose from {', '.join(VOTE_LOSSES)})")
    if loss == "dirichlet" and not tree.fraction_suffix:
        raise ConfigError(f"tree {tree.name}: its columns hold vote fractions, not counts; use the mse loss")
    columns = set(collection.catalog.colnames)
    has_counts = bool(tree.fraction_suffix) and set(tree.count_columns) <= columns
    if loss is None:
        loss = "dirichlet" if has_counts else "mse"
    # Fractions follow from counts, so the MSE loss can read either.
    use_fractions = loss == "mse" and (set(tree.fraction_columns) <= columns or not has_counts)
    wanted = tree.fraction_columns if use_fractions else tree.count_columns
    absent = [name for name in wanted if name not in columns]
    if absent:
        raise MissingColumnError(collection.name, absent[0], None)
    votes = np.stack([np.ma.filled(np.ma.asarray(collection.catalog[name], dtype=np.float64), np.nan) for name in wanted], axis=1)
    if loss == "dirichlet":
        return np.nan_to_num(votes).astype(np.float32), loss
    return tree.normalise(np.nan_to_num(votes)).astype(np.float32), loss


def split_indices(
    collection: GalaxyCollection,
    split_column: str | None = "split",
    val_fraction: float = 0.2,
    seed: int = 0,
    stratify: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Train, validation and test rows of a collection.

    A catalog column named ``split_column`` with values ``train``,
    ``val``/``validation`` and ``test`` is used as it is; otherwise a
    random (stratified when ``stratify`` is given) fraction becomes the
    validation split and there is no test split.

    Parameters
    ----------
    collection : GalaxyCollection
    split_column : str, optional
        Name of the split column.
    val_fraction : float
        Validation share when there is no split column.
    seed : int
        Seed of the random split.
    stratify : ndarray, optional
        Class codes to stratify the random split by.

    Returns
    -------
    dict
        ``train``, ``val`` and ``test`` arrays of row indices.
    """
    from sklearn.model_selection import train_test_split

    if split_column and split_column in collection.catalog.colnames:
        values = np.array([str(value).lower() for value in collection.catalog[split_column].tolist()])
        splits = {role: np.flatnonzero(np.isin(values, names)) for role, names in SPLIT_NAMES.items()}
        for role in ("train", "val"):
            if splits[role].size == 0:
                raise CatalogError(f"{collection.name}: column '{split_column}' has no '{role}' rows")
        return splits
    if not 0.0 < val_fraction < 1.0:
        raise ConfigError(f"val_fraction {val_fraction} must lie in (0, 1)")
    rows = np.arange(len(collection))
    alone = np.zeros(len(rows), dtype=bool)
    if stratify is not None:
        # A class with one galaxy cannot be split; it trains (a few labels are where a rare class starts).
        codes, counts = np.unique(stratify, return_counts=True)
        alone = np.isin(stratify, codes[counts < 2])
    train, val = train_test_split(rows[~alone], test_size=val_fraction, random_state=seed,
                                  stratify=None if stratify is None else np.asarray(stratify)[~alone])
    train = np.concatenate([train, rows[alone]])
    return {"train": np.sort(train), "val": np.sort(val), "test": np.array([], dtype=int)}


#: Stamps measured by :func:`choose_crop`.
CROP_SAMPLE = 64
# The central galaxy's footprint is its segment at this many sky sigmas.
_FOOTPRINT_SIGMA = 3.0
# Share of the sampled galaxies whose whole footprint must fit in the crop.
_FOOTPRINT_QUANTILE = 75
# A crop keeping more than this share of the side is not worth it: keep all.
_MAX_CROP_SHARE = 0.9


@dataclass
class CropChoice:
    """The central crop chosen by :func:`choose_crop`, and why.

    Attributes
    ----------
    pixels : int or None
        Side of the central square to keep; None keeps the whole stamp.
    side : int
        Side of the stamps.
    reason : str
        One line saying how it was chosen.
    """

    pixels: int | None
    side: int
    reason: str

    def describe(self) -> str:
        """``"central 202 of 423 px (...)"`` or ``"whole 423 px stamp (...)"``."""
        kept = f"central {self.pixels} of {self.side} px" if self.pixels else f"whole {self.side} px stamp"
        return f"{kept} ({self.reason})"


def choose_crop(collection: GalaxyCollection, config, seed: int = 0, n_sample: int = CROP_SAMPLE) -> CropChoice:
    """Measure how much of the stamp the central galaxies fill.

    On a random sample of stamps (background subtracted as ``config`` says,
    bands summed), the central galaxy is the photutils segment (at 3 sky
    sigmas, sigma-clipped) under the stamp's centre; its footprint radius is
    the farthest of its pixels from the centre.  The crop is twice the upper
    quartile of that radius, so that three galaxies in four lie wholly inside
    it (gz1: 202 of 423 px; Dieleman et al. cropped 207 of 424 px by eye).  A
    higher quantile follows neighbours that merge into the central segment
    (gz2-spirals: 90th percentile 370 px, upper quartile 258 px).

    Parameters
    ----------
    collection : GalaxyCollection
        The training galaxies.
    config : PreprocessConfig
        The preprocessing to be used (its background setting is followed).
    seed : int
        Seed of the sample.
    n_sample : int
        Stamps measured.

    Returns
    -------
    CropChoice
        ``pixels`` None when the footprints fill more than 90% of the side or
        fewer than half of the sampled stamps have a source at the centre.
    """
    from astropy.stats import sigma_clipped_stats
    from photutils.segmentation import detect_sources

    from ..preprocessing import PreprocessConfig, Preprocessor

    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(collection), size=min(n_sample, len(collection)), replace=False))
    measure = Preprocessor(PreprocessConfig(
        subtract_background=config.subtract_background, background_sigma=config.background_sigma,
        output_size=None, normalisation="none", nan_fill=0.0,
    ))
    stamps = collection.subset(rows).read_images(measure)
    height, width = stamps.shape[-2:]
    side = min(height, width)
    centre = ((height - 1) / 2, (width - 1) / 2)
    radii = []
    for stamp in stamps:
        light = stamp.sum(axis=0)
        _, _, sky_sigma = sigma_clipped_stats(light)
        segments = detect_sources(light, _FOOTPRINT_SIGMA * sky_sigma, n_pixels=5) if sky_sigma > 0 else None
        label = 0 if segments is None else segments.data[int(centre[0]), int(centre[1])]
        if label:
            ys, xs = np.nonzero(segments.data == label)
            radii.append(float(np.hypot(ys - centre[0], xs - centre[1]).max()))
    if len(radii) < len(stamps) / 2:
        return CropChoice(None, side, f"a source at the centre in only {len(radii)} of {len(stamps)} sampled stamps")
    radius = float(np.percentile(radii, _FOOTPRINT_QUANTILE))
    pixels = 2 * math.ceil(radius)
    reason = (f"chosen from the data: {_FOOTPRINT_QUANTILE}% of {len(stamps)} sampled galaxies have their "
              f"{_FOOTPRINT_SIGMA:g}-sigma footprint within {radius:.0f} px of the centre")
    if pixels > _MAX_CROP_SHARE * side:
        return CropChoice(None, side, reason)
    return CropChoice(pixels, side, reason)
