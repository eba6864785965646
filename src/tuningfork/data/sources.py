"""Image sources: where the pixels of a collection's galaxies are read from.

One class per storage layout (image files named by a catalog or found in a
folder, an HDF5 dataset, an NPY stack, an NPZ member, arrays in memory), and
the helpers that recognise what such a file holds.  A source holds paths and
positions, never an open file handle, so it pickles cheaply to worker
processes; it reads the images of given positions, one batch at a time.
"""

from __future__ import annotations

import abc
import contextlib
import struct
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ImageShapeError, MissingColumnError
from .catalog import ID_NAMES, find_column, normalise_ids
from .readers import (
    file_suffix,
    read_bands,
    read_image,
    read_image_scaled,
    reraise_as_corrupt,
    stored_dtype,
    to_bands_first,
)

if TYPE_CHECKING:
    from astropy.table import Table

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
STACK_SUFFIXES = (".npy", ".npz")
# Dataset / array names inside HDF5 and NPZ files; "ans" is Galaxy10's label dataset.
ARRAY_IMAGE_KEYS = ("images", "image", "imgs", "x")
ARRAY_LABEL_KEYS = ("ans", "labels", "label", "y")
ARRAY_ID_KEYS = ("ids", *ID_NAMES)
IN_MEMORY = "<arrays>"


class ImageSource(abc.ABC):
    """Reads the images at given positions; holds no open handles, so it pickles."""

    @abc.abstractmethod
    def read(self, positions: np.ndarray, *, require_finite: bool = True) -> list[np.ndarray]:
        """float32 ``(bands, H, W)`` images at ``positions``, in that order."""

    def read_scaled(
        self, positions: np.ndarray, scale_for: Callable[[int, int], int]
    ) -> tuple[list[np.ndarray], list[int]]:
        """The images at ``positions``, each decoded at the reduction ``scale_for`` allows, and those reductions.

        Only single PNG/JPEG files are reduced (:func:`read_image_scaled`);
        other sources read whole (reduction 1).
        """
        return self.read(positions), [1] * len(positions)

    @abc.abstractmethod
    def stored_dtype(self, position: int) -> str:
        """Pixel type as stored for the image at ``position``."""

    @abc.abstractmethod
    def where(self, position: int) -> str:
        """The file (and place in it) of the image at ``position``, for messages."""

    def restricted(self, positions: np.ndarray) -> tuple[ImageSource, np.ndarray]:
        """A source holding only ``positions``, and where each of them lies in it.

        File-backed stacks are already small to pickle (a path), so they
        return themselves.
        """
        return self, positions


class FileSource(ImageSource):
    """One image file (or one file per band) per position.

    Parameters
    ----------
    files : list of tuple of str or Path
        Each position's file, or one file per band.
    hdus : list of int, str or None
        Each position's FITS extension (None: the first image).
    """

    def __init__(self, files: list[tuple[str | Path, ...]], hdus: list[int | str | None]):
        self.files = files
        self.hdus = hdus

    def read(self, positions: np.ndarray, *, require_finite: bool = True) -> list[np.ndarray]:
        images = []
        for position in positions:
            files, hdu = self.files[position], self.hdus[position]
            if len(files) == 1:
                images.append(read_image(files[0], hdu=hdu, require_finite=require_finite))
            else:
                images.append(read_bands(files, hdu=hdu, require_finite=require_finite))
        return images

    def read_scaled(
        self, positions: np.ndarray, scale_for: Callable[[int, int], int]
    ) -> tuple[list[np.ndarray], list[int]]:
        images, scales = [], []
        for position in positions:
            files, hdu = self.files[position], self.hdus[position]
            if len(files) == 1 and hdu is None:
                image, scale = read_image_scaled(files[0], scale_for)
            else:
                image, scale = self.read(np.asarray([position]))[0], 1
            images.append(image)
            scales.append(scale)
        return images, scales

    def stored_dtype(self, position: int) -> str:
        return stored_dtype(self.files[position][0], hdu=self.hdus[position])

    def where(self, position: int) -> str:
        hdu = self.hdus[position]
        return str(self.files[position][0]) + (f"[{hdu}]" if hdu is not None else "")

    def restricted(self, positions: np.ndarray) -> tuple[FileSource, np.ndarray]:
        kept, inverse = _distinct(positions)
        return FileSource([self.files[i] for i in kept], [self.hdus[i] for i in kept]), inverse


class StackSource(ImageSource):
    """Images stacked along the first axis of one array-like."""

    origin: str | Path

    @abc.abstractmethod
    def _stack(self) -> contextlib.AbstractContextManager[Any]:
        """Context giving the stack (memmap, HDF5 dataset or array) for one read."""

    def read(self, positions: np.ndarray, *, require_finite: bool = True) -> list[np.ndarray]:
        with self._stack() as stack:
            raw = take(stack, np.asarray(positions, dtype=np.int64))
        return [
            to_bands_first(pixels, self.where(position), require_finite=require_finite)
            for pixels, position in zip(raw, positions)
        ]

    def stored_dtype(self, position: int) -> str:
        with self._stack() as stack:
            return np.asarray(stack[position]).dtype.name

    def where(self, position: int) -> str:
        return f"{self.origin}[{position}]"


class NpySource(StackSource):
    """A memory-mapped ``.npy`` stack."""

    def __init__(self, path: Path):
        self.origin = path

    @contextlib.contextmanager
    def _stack(self) -> Iterator[np.ndarray]:
        with reraise_as_corrupt(self.origin, "NPY file"):
            stack = np.load(self.origin, mmap_mode="r", allow_pickle=False)
        yield stack


class NpzSource(StackSource):
    """One member of an ``.npz`` archive: memory-mapped when stored, else decompressed once."""

    def __init__(self, path: Path, key: str):
        self.origin = path
        self.key = key
        self._decompressed: np.ndarray | None = None

    def __getstate__(self) -> dict:
        # Workers re-read the archive themselves rather than receive a copy of it.
        return {**self.__dict__, "_decompressed": None}

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the whole stack."""
        with self._stack() as stack:
            return stack.shape

    @contextlib.contextmanager
    def _stack(self) -> Iterator[np.ndarray]:
        if self._decompressed is not None:
            yield self._decompressed
            return
        with reraise_as_corrupt(self.origin, "NPZ file"):
            stack = npz_member_memmap(self.origin, self.key)
            if stack is None:
                with np.load(self.origin, allow_pickle=False) as archive:
                    self._decompressed = stack = archive[self.key]
        yield stack


class Hdf5Source(StackSource):
    """One dataset of an HDF5 file, opened for each read."""

    def __init__(self, path: Path, key: str):
        self.origin = path
        self.key = key

    @contextlib.contextmanager
    def _stack(self) -> Iterator[Any]:
        import h5py

        with reraise_as_corrupt(self.origin, "HDF5 file"):
            h5 = h5py.File(self.origin, "r")
        with h5:
            yield h5[self.key]


class ArraySource(StackSource):
    """Images already in memory: one stack, or a list of images of any shapes."""

    origin = IN_MEMORY

    def __init__(self, images: np.ndarray | list[np.ndarray]):
        self.images = images

    @contextlib.contextmanager
    def _stack(self) -> Iterator[np.ndarray | list[np.ndarray]]:
        yield self.images

    def restricted(self, positions: np.ndarray) -> tuple[ArraySource, np.ndarray]:
        kept, inverse = _distinct(positions)
        return ArraySource(take(self.images, kept)), inverse


def _distinct(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct positions, and where each of ``positions`` lies among them."""
    kept, inverse = np.unique(positions, return_inverse=True)
    return kept, inverse.astype(np.int64)


def take(stack: Any, positions: np.ndarray) -> list[np.ndarray] | np.ndarray:
    """Read ``stack[positions]``, by one slice when contiguous (fast for HDF5).

    Parameters
    ----------
    stack : ndarray, h5py.Dataset or list of ndarray
        The images, along the first axis.
    positions : ndarray of int
        Which to read, in order (repeats allowed).

    Returns
    -------
    ndarray or list of ndarray
    """
    if len(positions) == 0:
        return []
    if isinstance(stack, list):
        return [stack[position] for position in positions]
    if np.all(np.diff(positions) == 1):
        return stack[int(positions[0]) : int(positions[-1]) + 1]
    # HDF5 fancy indexing needs increasing, unique indices.
    unique, inverse = np.unique(positions, return_inverse=True)
    return np.asarray(stack[unique])[inverse]


def check_stack_shape(shape: tuple[int, ...], origin: str | Path) -> int:
    """Return the number of images in a stack, after checking it is 3-D or 4-D.

    Parameters
    ----------
    shape : tuple of int
        Shape of the stack.
    origin : str or Path
        Named in the error.

    Returns
    -------
    int

    Raises
    ------
    ImageShapeError
        The stack is neither (N, H, W) nor (N, B, H, W).
    """
    if len(shape) not in (3, 4):
        raise ImageShapeError(
            origin, f"image stack has shape {shape}; expected (N, H, W) or (N, B, H, W)"
        )
    return int(shape[0])


def find_images_key(requested: str | None, names: list[str], path: Path) -> str:
    """Return the HDF5 dataset (or NPZ member) holding the images.

    Parameters
    ----------
    requested : str or None
        The name the user gave; recognised by name when None.
    names : list of str
        Datasets present.
    path : Path
        Named in the error.

    Returns
    -------
    str

    Raises
    ------
    MissingColumnError
        No such dataset.
    """
    key = requested or find_column(names, ARRAY_IMAGE_KEYS)
    if key is None or key not in names:
        raise MissingColumnError(path, key or "images", names)
    return key


def columns_catalog(
    columns: dict[str, np.ndarray],
    count: int,
    origin: Path,
    *,
    labels_key: str | None,
    ids_key: str | None,
) -> Table:
    """Build the catalog from the 1-D arrays stored next to an image stack.

    Parameters
    ----------
    columns : dict of str to ndarray
        The 1-D arrays of length ``count``.
    count : int
        Number of images.
    origin : Path
        The file, named in errors.
    labels_key, ids_key : str or None
        Arrays that hold the labels and the ids; recognised by name when None.

    Returns
    -------
    astropy.table.Table
        With a string ``id`` column (row numbers without an id array) and the
        labels as ``label``.
    """
    from astropy.table import Table

    for key in (labels_key, ids_key):
        if key is not None and key not in columns:
            raise MissingColumnError(origin, key, list(columns))
    labels_key = labels_key or find_column(list(columns), ARRAY_LABEL_KEYS)
    ids_key = ids_key or find_column(list(columns), ARRAY_ID_KEYS)
    table = Table()
    if ids_key is None:
        table["id"] = np.arange(count).astype(str)
    renamed = {ids_key: "id", labels_key: "label"}
    for name, values in columns.items():
        values = np.asarray(values)
        if values.dtype.kind in "SO":
            values = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in values])
        table[renamed.get(name, name)] = values
    return normalise_ids(table, origin)


def npz_member_memmap(path: Path, key: str) -> np.ndarray | None:
    """Memory-map an uncompressed NPZ member.

    Parameters
    ----------
    path : Path
        The archive.
    key : str
        Member name without ``.npy``.

    Returns
    -------
    numpy.memmap or None
        None when the member is compressed (it cannot be mapped).
    """
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as raw:
        # The member starts after its local header, whose name and extra-field
        # lengths can differ from the central directory's copy.
        raw.seek(info.header_offset + 26)
        name_length, extra_length = struct.unpack("<HH", raw.read(4))
        raw.seek(info.header_offset + 30 + name_length + extra_length)
        version = np.lib.format.read_magic(raw)
        read_header = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        shape, fortran_order, dtype = read_header(raw)
        offset = raw.tell()
    return np.memmap(
        path, dtype=dtype, mode="r", shape=shape, offset=offset, order="F" if fortran_order else "C"
    )


def file_stem(path: Path) -> str:
    """Return the file name without its (possibly compound, e.g. ``.fits.gz``) suffix.

    Parameters
    ----------
    path : Path

    Returns
    -------
    str
    """
    suffix = file_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name
