"""Batches: runs of consecutive galaxies read together, as one image stack.

A :class:`Batch` always holds one float32 ``(n, bands, H, W)`` array, so
every consumer (a network, a feature extractor, a writer) can use it as is.
Images of different sizes cannot share a batch: they raise an
:class:`~tuningfork.errors.ImageShapeError` that names the first image whose
shape differs and says to resize them with a preprocess; single galaxies of
any size are read with ``collection[i]`` or by iterating a collection.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import ConfigError, ImageShapeError

# What to do about images of several sizes, said in every shape error.
RESIZE_HINT = (
    "pass a preprocess that gives every image one size "
    "(e.g. Preprocessor(PreprocessConfig(output_size=64)))"
)


@dataclass(frozen=True)
class Galaxy:
    """One galaxy of a collection.

    Attributes
    ----------
    id : str
        Catalog id.
    image : ndarray
        float32 ``(bands, height, width)``.
    row : dict
        The galaxy's catalog row (column name to Python value, None when masked).
    """

    id: str
    image: np.ndarray
    row: dict[str, Any]


@dataclass(frozen=True)
class Batch:
    """A run of consecutive galaxies read together.

    Attributes
    ----------
    ids : list of str
        Catalog ids.
    images : ndarray
        float32 ``(n, bands, height, width)``.
    rows : list of dict
        Catalog rows, as in :class:`Galaxy`.
    """

    ids: list[str]
    images: np.ndarray
    rows: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)


def check_batch_size(batch_size: Any, name: str) -> int:
    """Return ``batch_size`` as an int after checking it is a positive integer.

    Parameters
    ----------
    batch_size : int
        Galaxies per batch.
    name : str
        The collection, named in the error.

    Returns
    -------
    int

    Raises
    ------
    ConfigError
        Not a positive integer.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError(f"{name}: batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


#: Galaxies to decode at a time when only small preprocessed images are kept:
#: raw survey stamps are large (a 424-pixel RGB JPEG is 2 MB as float32), and a
#: small batch of them stays in the CPU's cache through preprocessing instead
#: of faulting in hundreds of megabytes per batch; the network still batches
#: the preprocessed images as it likes.
DECODE_BATCH = 32


def preprocess_images(
    images: Sequence[np.ndarray],
    preprocess: Callable[[np.ndarray], np.ndarray] | None,
    where: Callable[[int], str],
    source: str,
    scales: Sequence[int] | None = None,
) -> np.ndarray:
    """Images through ``preprocess``, as one float32 ``(n, bands, h, w)`` stack.

    Parameters
    ----------
    images : sequence of ndarray
        Raw ``(bands, H, W)`` images, left untouched.
    preprocess : callable, optional
        Applied to each image; a :class:`~tuningfork.preprocessing.Preprocessor`
        runs on the whole stack at once (its ``batch`` method, much faster)
        when the images share a shape.
    where : callable
        ``where(i)`` names image ``i`` (its file) in errors.
    source : str
        Name of the whole batch in errors.
    scales : sequence of int, optional
        The reduction each image was decoded at
        (:meth:`~tuningfork.data.GalaxyCollection.scaled_images`); then
        ``preprocess`` must be a ``Preprocessor``, told each image's.

    Returns
    -------
    ndarray

    Raises
    ------
    ImageShapeError
        The images (after ``preprocess``) differ in shape.
    """
    if scales is not None and any(scale != 1 for scale in scales):
        out: list[np.ndarray] = [np.empty(0)] * len(images)
        for scale in sorted(set(scales)):
            rows = [row for row, value in enumerate(scales) if value == scale]
            group = [images[row] for row in rows]
            if all(image.shape == group[0].shape for image in group):
                done = preprocess.batch(stack_images(group, lambda i, rows=rows: where(rows[i])), source=source, scale=scale)
            else:
                done = [preprocess(image, source=where(row), scale=scale) for image, row in zip(group, rows)]
            for row, image in zip(rows, done):
                out[row] = image
        return stack_images(out, where)
    same_shape = all(image.shape == images[0].shape for image in images)
    preprocess_stack = getattr(preprocess, "batch", None)
    if same_shape and preprocess_stack is not None:
        return preprocess_stack(stack_images(images, where), source=source)
    if preprocess is not None:
        images = [preprocess(image) for image in images]
    return stack_images(images, where)


def stack_images(images: Sequence[np.ndarray], where: Callable[[int], str]) -> np.ndarray:
    """Stack images of one shape into a float32 ``(n, bands, H, W)`` array.

    Parameters
    ----------
    images : sequence of ndarray
        ``(bands, H, W)`` images.
    where : callable
        ``where(i)`` names image ``i`` (its file) in the error.

    Returns
    -------
    ndarray
        float32 ``(n, bands, H, W)``; ``(0, 0, 0, 0)`` for no images.

    Raises
    ------
    ImageShapeError
        Naming the first image whose shape differs from the first one's.
    """
    if len(images) == 0:
        return np.zeros((0, 0, 0, 0), dtype=np.float32)
    first = images[0].shape
    for index, image in enumerate(images):
        if image.shape != first:
            raise ImageShapeError(
                where(index),
                f"image is {_shape(image.shape)} but {where(0)} is {_shape(first)}; "
                f"a batch holds images of one size: {RESIZE_HINT}",
            )
    return np.stack(images).astype(np.float32, copy=False)


def concatenate_batches(batches: Iterator[Batch], name: str) -> np.ndarray:
    """Concatenate the images of batches into one array, checking they share a shape.

    Parameters
    ----------
    batches : iterator of Batch
        Typically ``collection.iter_batches(...)``.
    name : str
        The collection, named in the error.

    Returns
    -------
    ndarray
        float32 ``(n, bands, H, W)``.

    Raises
    ------
    ImageShapeError
        Two batches differ in image shape (naming the first id of the odd one).
    """
    stacks, first = [], None
    for batch in batches:
        if first is None:
            first = batch
        elif batch.images.shape[1:] != first.images.shape[1:]:
            raise ImageShapeError(
                name,
                f"galaxy {batch.ids[0]} is {_shape(batch.images.shape[1:])} but galaxy {first.ids[0]} is "
                f"{_shape(first.images.shape[1:])}; {RESIZE_HINT}",
            )
        stacks.append(batch.images)
    if not stacks:
        return np.zeros((0, 0, 0, 0), dtype=np.float32)
    return np.concatenate(stacks).astype(np.float32, copy=False)


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(map(str, shape))


@contextlib.contextmanager
def progress_bar(total: int, enabled: bool, description: str) -> Iterator[Callable[[int], None]]:
    """Yield a function that advances a rich progress bar on stderr (a no-op when disabled).

    The bar is transient (it disappears when done) and is shown only when
    stderr is a terminal and the ``CI`` environment variable is not set to a
    true value, so logs, pipes and test runs stay free of it.

    Parameters
    ----------
    total : int
        Steps in all.
    enabled : bool
        Show the bar (still subject to the terminal and ``CI`` checks).
    description : str
        Its label.

    Yields
    ------
    callable
        ``advance(done)`` moves the bar on by ``done`` steps.
    """
    from rich.console import Console

    console = Console(stderr=True)
    if not (enabled and console.is_terminal and not _running_in_ci()):
        yield lambda done: None
        return
    from rich.progress import Progress

    with Progress(console=console, transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.advance(task, done)


def _running_in_ci() -> bool:
    """True when the ``CI`` variable that CI services set says so."""
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")
