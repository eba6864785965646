"""GalaxyCollection: the one lazy entry point to any galaxy data set.

A collection pairs a catalog (an astropy Table with a string ``id`` column,
one row per galaxy) with an *image source* that reads pixels on demand:
image files named by the catalog, an HDF5 dataset, an NPY/NPZ stack or
in-memory arrays.  Sources hold paths and positions, never open file handles,
so collections and their shards pickle cheaply to worker processes, and
images are only ever read one batch at a time.
"""

from __future__ import annotations

import abc
import contextlib
import math
import struct
import warnings
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import (
    CatalogError,
    ConfigError,
    ImageShapeError,
    InputFileError,
    MissingColumnError,
    MissingFileError,
    MissingImagesError,
)
from .catalog import (
    CATALOG_FORMATS,
    ID_NAMES,
    CatalogSchema,
    find_column,
    normalise_ids,
    read_catalog,
)
from .readers import (
    FITS_SUFFIXES,
    IMAGE_SUFFIXES,
    file_suffix,
    image_format,
    is_fits_table,
    read_bands,
    read_image,
    reraise_as_corrupt,
    stored_dtype,
    to_bands_first,
)

if TYPE_CHECKING:
    from astropy.table import Table

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
STACK_SUFFIXES = (".npy", ".npz")
# Catalog file names that make a folder open as that catalog rather than as loose images.
FOLDER_CATALOG_NAMES = ("catalog.csv", "catalog.parquet", "catalog.fits")
# Dataset / array names inside HDF5 and NPZ files; "ans" is Galaxy10's label dataset.
ARRAY_IMAGE_KEYS = ("images", "image", "imgs", "x")
ARRAY_LABEL_KEYS = ("ans", "labels", "label", "y")
ARRAY_ID_KEYS = ("ids", *ID_NAMES)
IN_MEMORY = "<arrays>"


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
    images : ndarray or list of ndarray
        float32 ``(n, bands, height, width)`` when all images share a shape,
        else a list of ``(bands, height, width)`` arrays.
    rows : list of dict
        Catalog rows, as in :class:`Galaxy`.
    """

    ids: list[str]
    images: np.ndarray | list[np.ndarray]
    rows: list[dict[str, Any]]

    def __len__(self) -> int:
        return len(self.ids)


class GalaxyCollection:
    """A catalog of galaxies whose images are read lazily, batch by batch.

    Build one with :meth:`open` (which recognises what a path is) or the
    ``from_*`` class methods rather than with the constructor.

    Parameters
    ----------
    source : image source
        Reads the pixels of given positions (internal).
    catalog : astropy.table.Table
        One row per galaxy, with a string ``id`` column.
    kind : str
        What the data came from: ``catalog``, ``directory``, ``file``,
        ``hdf5``, ``npy``, ``npz`` or ``arrays``.
    origin : Path, optional
        The file or folder opened; None for in-memory arrays.
    schema : CatalogSchema, optional
        Column roles; inferred from ``catalog`` by default.
    positions : ndarray of int, optional
        Position of each catalog row within ``source``; by default 0..n-1.
    class_names : list of str, optional
        Classes of the label column, fixed by the collection a subset came
        from so that label codes agree between shards.
    skipped : astropy.table.Table, optional
        Catalog rows left out because their image files are missing.
    label_column : str, optional
        Label column when ``schema`` is inferred; recognised by name by default.

    Attributes
    ----------
    catalog : astropy.table.Table
    schema : CatalogSchema
    kind : str
    origin : Path or None
    class_names : list of str
        Sorted distinct values of the label column (empty without one).
    skipped : astropy.table.Table
    """

    def __init__(
        self,
        source: _ImageSource,
        catalog: Table,
        *,
        kind: str,
        origin: str | Path | None = None,
        schema: CatalogSchema | None = None,
        positions: np.ndarray | None = None,
        class_names: list[str] | None = None,
        skipped: Table | None = None,
        label_column: str | None = None,
    ):
        from astropy.table import Table

        self._source = source
        self.catalog = catalog
        self.kind = kind
        self.origin = Path(origin) if origin is not None else None
        self._positions = (
            np.arange(len(catalog)) if positions is None else np.asarray(positions, dtype=np.int64)
        )
        if len(self._positions) != len(catalog):
            raise CatalogError(
                f"{self.name}: {len(catalog)} catalog rows but {len(self._positions)} images"
            )
        if schema is None:
            schema = CatalogSchema.infer(catalog, self.name, label_column=label_column)
        self.schema = schema
        label = self.schema.label_column
        if class_names is None:
            class_names = _class_names(catalog[label]) if label else []
        self.class_names = list(class_names)
        self.skipped = skipped if skipped is not None else Table()
        self._ids = [str(value) for value in catalog["id"].tolist()]

    # ----------------------------------------------------------- constructors
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        label_column: str | None = None,
        skip_missing: bool = False,
        **options: Any,
    ) -> GalaxyCollection:
        """Open any supported data set, recognising what ``path`` is.

        Parameters
        ----------
        path : str or Path
            A catalog (``.csv``, ``.parquet``, FITS table), an HDF5 file
            (``.h5``/``.hdf5``), an NPY/NPZ stack, a single image (FITS image,
            PNG, JPEG, 2-D NPY) or a folder.  A folder holding
            ``catalog.csv``/``.parquet``/``.fits`` opens that catalog; any
            other folder opens its image files.
        label_column : str, optional
            Catalog column holding the class labels; recognised by name by
            default.
        skip_missing : bool
            Catalogs only (other sources cannot point at missing files): leave
            out rows whose image files are missing instead of raising.
        **options
            Passed to the matching ``from_*`` method (for example
            ``file_column``, ``images_key``, ``hdu``).

        Returns
        -------
        GalaxyCollection

        Raises
        ------
        MissingFileError
            ``path`` does not exist.
        UnsupportedFormatError
            ``path`` is of no supported type.
        """
        path = Path(path)
        if not path.exists():
            raise MissingFileError(path, "data set")
        if path.is_dir():
            catalogs = [path / name for name in FOLDER_CATALOG_NAMES if (path / name).is_file()]
            if catalogs:
                return cls.from_catalog(
                    catalogs[0], label_column=label_column, skip_missing=skip_missing, **options
                )
            return cls.from_directory(path, label_column=label_column, **options)
        suffix = file_suffix(path)
        if suffix in HDF5_SUFFIXES:
            return cls.from_hdf5(path, label_column=label_column, **options)
        if suffix in STACK_SUFFIXES:
            return cls.from_numpy(path, label_column=label_column, **options)
        if suffix in CATALOG_FORMATS and (suffix not in FITS_SUFFIXES or is_fits_table(path)):
            return cls.from_catalog(
                path, label_column=label_column, skip_missing=skip_missing, **options
            )
        return cls.from_file(path, label_column=label_column, **options)

    @classmethod
    def from_catalog(
        cls,
        path: str | Path,
        *,
        id_column: str | None = None,
        file_column: str | None = None,
        band_columns: dict[str, str] | Sequence[str] | None = None,
        hdu_column: str | None = None,
        label_column: str | None = None,
        vote_columns: Sequence[str] | None = None,
        ra_column: str | None = None,
        dec_column: str | None = None,
        image_root: str | Path | None = None,
        skip_missing: bool = False,
    ) -> GalaxyCollection:
        """Open a catalog whose rows name image files.

        Parameters
        ----------
        path : str or Path
            CSV, Parquet or FITS table (see :func:`~tuningfork.data.read_catalog`).
        id_column, file_column, band_columns, hdu_column : optional
            Explicit column roles (see :meth:`CatalogSchema.infer`); recognised
            from the column names by default.
        label_column, vote_columns, ra_column, dec_column : optional
            Explicit column roles (see :meth:`CatalogSchema.infer`); recognised
            from the column names by default.
        image_root : str or Path, optional
            Folder that relative file paths start from; the catalog's folder
            by default.
        skip_missing : bool
            Leave out rows whose files are missing (recorded on ``skipped``,
            with a warning) instead of raising.

        Returns
        -------
        GalaxyCollection

        Raises
        ------
        MissingColumnError
            No file column is recognised or a named column is absent.
        MissingImagesError
            Rows point at missing files (all of them are listed) and
            ``skip_missing`` is false.
        """
        path = Path(path)
        table = read_catalog(path, id_column=id_column)
        schema = CatalogSchema.infer(
            table,
            path,
            file_column=file_column,
            band_columns=band_columns,
            hdu_column=hdu_column,
            label_column=label_column,
            vote_columns=vote_columns,
            ra_column=ra_column,
            dec_column=dec_column,
        )
        if not schema.image_columns:
            raise MissingColumnError(path, "file", table.colnames)
        files = schema.image_paths(table, image_root if image_root is not None else path.parent)
        hdus = table[schema.hdu_column].tolist() if schema.hdu_column else [None] * len(table)
        missing_rows = [
            row for row, row_files in enumerate(files) if not all(f.is_file() for f in row_files)
        ]
        if missing_rows and not skip_missing:
            first_missing = [next(f for f in files[row] if not f.is_file()) for row in missing_rows]
            raise MissingImagesError(path, first_missing)
        if missing_rows:
            warnings.warn(
                f"{path}: skipped {len(missing_rows)} rows whose image files are missing",
                stacklevel=2,
            )
        kept = np.setdiff1d(np.arange(len(table)), missing_rows)
        source = _FileSource([files[row] for row in kept], [hdus[row] for row in kept])
        return cls(
            source,
            table[kept],
            kind="catalog",
            origin=path,
            schema=schema,
            skipped=table[missing_rows],
        )

    @classmethod
    def from_directory(
        cls, path: str | Path, *, hdu: int | str | None = None, label_column: str | None = None
    ) -> GalaxyCollection:
        """Open every image file directly inside a folder, ids from file names.

        Parameters
        ----------
        path : str or Path
            Folder of FITS/PNG/JPEG/NPY files (sub-folders are not searched).
        hdu : int or str, optional
            FITS extension to read from every FITS file.
        label_column : str, optional
            Accepted for a uniform :meth:`open`; the catalog of a folder has
            only ``id`` and ``file``, so any name raises MissingColumnError.

        Returns
        -------
        GalaxyCollection
            Sorted by id (the file name without its suffix).
        """
        from astropy.table import Table

        path = Path(path)
        if not path.is_dir():
            raise MissingFileError(path, "folder")
        images = {
            _stem(file): file
            for file in path.iterdir()
            if file.is_file() and file_suffix(file) in IMAGE_SUFFIXES
        }
        if not images:
            raise InputFileError(path, f"folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        ids = sorted(images)
        catalog = Table({"id": ids, "file": [images[i].name for i in ids]})
        source = _FileSource([(images[i],) for i in ids], [hdu] * len(ids))
        return cls(source, catalog, kind="directory", origin=path, label_column=label_column)

    @classmethod
    def from_file(
        cls, path: str | Path, *, hdu: int | str | None = None, label_column: str | None = None
    ) -> GalaxyCollection:
        """Wrap one image file as a collection of one galaxy.

        Parameters
        ----------
        path : str or Path
            FITS image, PNG, JPEG or NPY file.
        hdu : int or str, optional
            FITS extension (see :func:`~tuningfork.data.read_image`).
        label_column : str, optional
            As in :meth:`from_directory`.

        Returns
        -------
        GalaxyCollection
        """
        from astropy.table import Table

        path = Path(path)
        image_format(path)
        if not path.is_file():
            raise MissingFileError(path, "image file")
        catalog = Table({"id": [_stem(path)], "file": [path.name]})
        source = _FileSource([(path,)], [hdu])
        return cls(source, catalog, kind="file", origin=path, label_column=label_column)

    @classmethod
    def from_hdf5(
        cls,
        path: str | Path,
        *,
        images_key: str | None = None,
        labels_key: str | None = None,
        ids_key: str | None = None,
        label_column: str | None = None,
    ) -> GalaxyCollection:
        """Open an HDF5 file holding an image stack and per-galaxy datasets.

        Parameters
        ----------
        path : str or Path
            HDF5 file.  Galaxy10 layout (``images`` ``(N, H, W, 3)`` uint8 and
            ``ans`` labels) and plain ``images``/``labels`` both work; every
            other 1-D dataset of length N (``ra``, ``dec``, ``redshift``...)
            becomes a catalog column.
        images_key : str, optional
            Image dataset, ``(N, H, W)``, ``(N, B, H, W)`` or ``(N, H, W, C)``.
            By default the first of ``images``, ``image``, ``imgs``, ``x``.
        labels_key : str, optional
            Label dataset, stored as the catalog column ``label``; by default
            the first of ``ans``, ``labels``, ``label``, ``y`` when present.
        ids_key : str, optional
            Id dataset; by default ``ids`` or a usual id name, else row numbers.
        label_column : str, optional
            Another catalog column to use as the label instead of ``label``.

        Returns
        -------
        GalaxyCollection
            Images are read by slices, one batch at a time; uint8 pixels are
            scaled to [0, 1].
        """
        import h5py

        path = Path(path)
        if not path.is_file():
            raise MissingFileError(path, "HDF5 file")
        with reraise_as_corrupt(path, "HDF5 file"), h5py.File(path, "r") as h5:
            datasets = {name: item for name, item in h5.items() if isinstance(item, h5py.Dataset)}
            images_key = _images_key(images_key, list(datasets), path)
            count = _check_stack_shape(datasets[images_key].shape, path)
            columns = {
                name: item[()]
                for name, item in datasets.items()
                if name != images_key and item.ndim == 1 and item.shape[0] == count
            }
        catalog = _columns_catalog(columns, count, path, labels_key=labels_key, ids_key=ids_key)
        source = _Hdf5Source(path, images_key)
        return cls(source, catalog, kind="hdf5", origin=path, label_column=label_column)

    @classmethod
    def from_numpy(
        cls,
        path: str | Path,
        *,
        images_key: str = "images",
        labels_key: str | None = None,
        ids_key: str | None = None,
        label_column: str | None = None,
    ) -> GalaxyCollection:
        """Open an NPY stack (memory-mapped) or an NPZ archive.

        Parameters
        ----------
        path : str or Path
            ``.npy`` holding ``(N, H, W)`` or ``(N, B, H, W)`` (a 2-D array is
            opened as a single image), or ``.npz`` with an ``images`` array and
            optional ``labels``/``ids`` and other 1-D arrays of length N.
        images_key : str
            NPZ only: the image array's name.
        labels_key, ids_key, label_column : str, optional
            As in :meth:`from_hdf5` (an NPY stack has no other columns).

        Returns
        -------
        GalaxyCollection
            NPY stacks and uncompressed NPZ members are memory-mapped; a
            compressed NPZ member is decompressed into memory once.
        """
        from astropy.table import Table

        path = Path(path)
        if not path.is_file():
            raise MissingFileError(path, "array file")
        if file_suffix(path) == ".npy":
            with reraise_as_corrupt(path, "NPY file"):
                shape = np.load(path, mmap_mode="r", allow_pickle=False).shape
            if len(shape) == 2:
                return cls.from_file(path, label_column=label_column)
            count = _check_stack_shape(shape, path)
            catalog = Table({"id": [str(row) for row in range(count)]})
            return cls(
                _NpySource(path), catalog, kind="npy", origin=path, label_column=label_column
            )
        source = _NpzSource(path, images_key)
        with reraise_as_corrupt(path, "NPZ file"), np.load(path, allow_pickle=False) as archive:
            if images_key not in archive.files:
                raise MissingColumnError(path, images_key, archive.files)
            count = _check_stack_shape(source.shape, path)
            others = {name: archive[name] for name in archive.files if name != images_key}
        columns = {
            name: values
            for name, values in others.items()
            if values.ndim == 1 and len(values) == count
        }
        catalog = _columns_catalog(columns, count, path, labels_key=labels_key, ids_key=ids_key)
        return cls(source, catalog, kind="npz", origin=path, label_column=label_column)

    @classmethod
    def from_arrays(
        cls,
        images: np.ndarray | Sequence[np.ndarray],
        catalog: Table | dict | None = None,
        *,
        label_column: str | None = None,
    ) -> GalaxyCollection:
        """Wrap images already in memory.

        Parameters
        ----------
        images : ndarray or sequence of ndarray
            A stack ``(N, H, W)``, ``(N, B, H, W)`` or ``(N, H, W, C)``, or a
            sequence of single images of any shapes.  Never modified: every
            read returns a float32 copy.
        catalog : astropy.table.Table or dict of columns, optional
            One row per image; ids recognised as in
            :func:`~tuningfork.data.read_catalog`, else row numbers.
        label_column : str, optional
            Label column; recognised by name by default.

        Returns
        -------
        GalaxyCollection

        Raises
        ------
        CatalogError
            The catalog's length differs from the number of images.
        """
        from astropy.table import Table

        if isinstance(images, np.ndarray):
            count = _check_stack_shape(images.shape, IN_MEMORY)
        else:
            images = list(images)
            count = len(images)
        table = (
            Table({"id": [str(row) for row in range(count)]}) if catalog is None else Table(catalog)
        )
        if len(table) != count:
            raise CatalogError(
                f"{IN_MEMORY}: catalog has {len(table)} rows but there are {count} images"
            )
        table = normalise_ids(table, IN_MEMORY)
        return cls(_ArraySource(images), table, kind="arrays", label_column=label_column)

    # ------------------------------------------------------------- access
    @property
    def name(self) -> str:
        """The origin as text, used in messages (``<arrays>`` for in-memory data)."""
        return str(self.origin) if self.origin is not None else IN_MEMORY

    @property
    def ids(self) -> list[str]:
        """Galaxy ids in collection order."""
        return list(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def __repr__(self) -> str:
        return f"GalaxyCollection({self.kind} {self.name}, {len(self)} galaxies)"

    def __getitem__(self, index: int) -> Galaxy:
        """Read one galaxy; negative indices count from the end."""
        if not isinstance(index, (int, np.integer)):
            kind = type(index).__name__
            raise TypeError(f"GalaxyCollection index must be an integer, not {kind}; use subset()")
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: galaxy {index} out of range for {len(self)} galaxies")
        index = int(index) % len(self)
        batch = self._read_batch(index, index + 1, preprocess=None, require_finite=True)
        return Galaxy(batch.ids[0], batch.images[0], batch.rows[0])

    def __iter__(self) -> Iterator[Galaxy]:
        for batch in self.iter_batches():
            for galaxy_id, image, row in zip(batch.ids, batch.images, batch.rows):
                yield Galaxy(galaxy_id, image, row)

    def iter_batches(
        self,
        batch_size: int = 64,
        preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        progress: bool = False,
    ) -> Iterator[Batch]:
        """Read the galaxies in order, ``batch_size`` at a time.

        Parameters
        ----------
        batch_size : int
            Galaxies per batch; only one batch of images is in memory at once.
        preprocess : callable, optional
            Applied to each float32 ``(bands, H, W)`` image (for example a
            :class:`~tuningfork.preprocessing.Preprocessor`).
        progress : bool
            Show a rich progress bar on stderr.

        Yields
        ------
        Batch
        """
        yield from self._batches(batch_size, preprocess, progress, require_finite=True)

    def shards(self, n: int) -> list[GalaxyCollection]:
        """Split into ``n`` contiguous, disjoint collections that cover this one.

        Parameters
        ----------
        n : int
            Number of shards (at least 1); shard sizes differ by at most one,
            and shards are empty when ``n`` exceeds the number of galaxies.

        Returns
        -------
        list of GalaxyCollection
            Each holds paths and positions only, so it pickles cheaply.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(
                f"{self.name}: number of shards must be a positive integer, got {n!r}"
            )
        return [self.subset(rows) for rows in np.array_split(np.arange(len(self)), int(n))]

    def subset(self, indices: Sequence[int] | np.ndarray | slice) -> GalaxyCollection:
        """Return the galaxies at ``indices`` (integers, a boolean mask or a slice).

        Parameters
        ----------
        indices : sequence of int, boolean ndarray or slice
            Rows of this collection, in the order wanted.

        Returns
        -------
        GalaxyCollection
            Shares this collection's image source and class names.
        """
        rows = np.arange(len(self))[indices]
        return GalaxyCollection(
            self._source,
            self.catalog[rows],
            kind=self.kind,
            origin=self.origin,
            schema=self.schema,
            positions=self._positions[rows],
            class_names=self.class_names,
            skipped=self.skipped,
        )

    def labels(
        self, column: str | None = None, class_names: Sequence[str] | None = None
    ) -> np.ndarray:
        """Integer class codes of every galaxy.

        Parameters
        ----------
        column : str, optional
            Label column; the schema's label column by default.
        class_names : sequence of str, optional
            Class order to code against.  By default :attr:`class_names` for
            the label column (shared by all shards), else the sorted distinct
            values of ``column`` in this collection.

        Returns
        -------
        ndarray of int64
            ``class_names[code]`` is each galaxy's class.

        Raises
        ------
        MissingColumnError
            No label column.
        CatalogError
            Some rows have no label, or one outside ``class_names``.
        """
        column = column or self.schema.label_column
        if column is None or column not in self.catalog.colnames:
            raise MissingColumnError(self.name, column or "label", self.catalog.colnames)
        if class_names is None:
            use_shared = column == self.schema.label_column
            class_names = self.class_names if use_shared else _class_names(self.catalog[column])
        code_of = {name: code for code, name in enumerate(class_names)}
        values = _label_values(self.catalog[column])
        unusable = [value for value in values if value is None or str(value) not in code_of]
        if unusable:
            raise CatalogError(
                f"{self.name}: {len(unusable)} rows of '{column}' have no label or an unknown one "
                f"(e.g. {unusable[0]!r}); use subset() to leave them out"
            )
        return np.array([code_of[str(value)] for value in values], dtype=np.int64)

    def describe(self, batch_size: int = 64, progress: bool = False) -> dict[str, Any]:
        """Summarise the data set, reading every image once, batch by batch.

        Parameters
        ----------
        batch_size : int
            Images read at a time.
        progress : bool
            Show a progress bar on stderr.

        Returns
        -------
        dict
            ``source``, ``origin``, ``count``, ``skipped`` (rows left out),
            ``shapes`` (``"BxHxW"`` to count, most common first), ``bands``
            (distinct band counts), ``band_names``, ``source_dtype`` (pixel
            type as stored, of the first image), ``nonfinite_fraction`` (NaN
            or inf pixels over all pixels), ``columns`` (the schema) and, with
            a label column, ``label_column`` and ``label_counts`` (rows
            without a label are counted under ``None``).
        """
        shapes: Counter[str] = Counter()
        bands: set[int] = set()
        pixels = nonfinite = 0
        for batch in self._batches(batch_size, None, progress, require_finite=False):
            for image in batch.images:
                shapes["x".join(map(str, image.shape))] += 1
                bands.add(int(image.shape[0]))
                pixels += image.size
                nonfinite += image.size - int(np.count_nonzero(np.isfinite(image)))
        summary: dict[str, Any] = {
            "source": self.kind,
            "origin": self.name,
            "count": len(self),
            "skipped": len(self.skipped),
            "shapes": dict(shapes.most_common()),
            "bands": sorted(bands),
            "band_names": self.schema.bands,
            "source_dtype": self._source.stored_dtype(int(self._positions[0]))
            if len(self)
            else None,
            "nonfinite_fraction": nonfinite / pixels if pixels else math.nan,
            "columns": self.schema.to_dict(),
        }
        label = self.schema.label_column
        if label:
            counts = Counter(
                None if value is None else str(value)
                for value in _label_values(self.catalog[label])
            )
            summary["label_column"] = label
            summary["label_counts"] = {
                name: counts[name] for name in self.class_names if counts[name]
            }
            if counts[None]:
                summary["label_counts"][None] = counts[None]
        return summary

    # ------------------------------------------------------------ internals
    def _batches(
        self,
        batch_size: int,
        preprocess: Callable[[np.ndarray], np.ndarray] | None,
        progress: bool,
        require_finite: bool,
    ) -> Iterator[Batch]:
        if (
            isinstance(batch_size, bool)
            or not isinstance(batch_size, (int, np.integer))
            or batch_size < 1
        ):
            raise ConfigError(
                f"{self.name}: batch_size must be a positive integer, got {batch_size!r}"
            )
        with _progress_bar(len(self), progress, f"reading {self.name}") as advance:
            for start in range(0, len(self), batch_size):
                stop = min(start + batch_size, len(self))
                yield self._read_batch(start, stop, preprocess, require_finite)
                advance(stop - start)

    def _read_batch(
        self,
        start: int,
        stop: int,
        preprocess: Callable[[np.ndarray], np.ndarray] | None,
        require_finite: bool,
    ) -> Batch:
        images = self._source.read(self._positions[start:stop], require_finite=require_finite)
        same_shape = bool(images) and all(image.shape == images[0].shape for image in images)
        # A Preprocessor runs much faster on a whole stack than image by image.
        preprocess_stack = getattr(preprocess, "batch", None)
        if same_shape and preprocess_stack is not None:
            images = preprocess_stack(np.stack(images), source=f"{self.name}[{start}:{stop}]")
        else:
            if preprocess is not None:
                images = [preprocess(image) for image in images]
            if images and all(image.shape == images[0].shape for image in images):
                images = np.stack(images)
        names = self.catalog.colnames
        columns = [self.catalog[name][start:stop].tolist() for name in names]
        rows = [dict(zip(names, values)) for values in zip(*columns)]
        return Batch(self._ids[start:stop], images, rows)


# ---------------------------------------------------------------- sources
class _ImageSource(abc.ABC):
    """Reads the images at given positions; holds no open handles, so it pickles."""

    @abc.abstractmethod
    def read(self, positions: np.ndarray, *, require_finite: bool = True) -> list[np.ndarray]:
        """float32 ``(bands, H, W)`` images at ``positions``, in that order."""

    @abc.abstractmethod
    def stored_dtype(self, position: int) -> str:
        """Pixel type as stored for the image at ``position``."""


class _FileSource(_ImageSource):
    """One image file (or one file per band) per position."""

    def __init__(self, files: list[tuple[Path, ...]], hdus: list[int | str | None]):
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

    def stored_dtype(self, position: int) -> str:
        return stored_dtype(self.files[position][0], hdu=self.hdus[position])


class _StackSource(_ImageSource):
    """Images stacked along the first axis of one array-like."""

    origin: str | Path

    @abc.abstractmethod
    def _stack(self) -> contextlib.AbstractContextManager[Any]:
        """Context giving the stack (memmap, HDF5 dataset or array) for one read."""

    def read(self, positions: np.ndarray, *, require_finite: bool = True) -> list[np.ndarray]:
        with self._stack() as stack:
            raw = _take(stack, np.asarray(positions, dtype=np.int64))
        return [
            to_bands_first(pixels, f"{self.origin}[{position}]", require_finite=require_finite)
            for pixels, position in zip(raw, positions)
        ]

    def stored_dtype(self, position: int) -> str:
        with self._stack() as stack:
            return np.asarray(stack[position]).dtype.name


class _NpySource(_StackSource):
    def __init__(self, path: Path):
        self.origin = path

    @contextlib.contextmanager
    def _stack(self) -> Iterator[np.ndarray]:
        with reraise_as_corrupt(self.origin, "NPY file"):
            stack = np.load(self.origin, mmap_mode="r", allow_pickle=False)
        yield stack


class _NpzSource(_StackSource):
    def __init__(self, path: Path, key: str):
        self.origin = path
        self.key = key
        self._decompressed: np.ndarray | None = None

    def __getstate__(self) -> dict:
        # Workers re-read the archive themselves rather than receive a copy of it.
        return {**self.__dict__, "_decompressed": None}

    @property
    def shape(self) -> tuple[int, ...]:
        with self._stack() as stack:
            return stack.shape

    @contextlib.contextmanager
    def _stack(self) -> Iterator[np.ndarray]:
        if self._decompressed is not None:
            yield self._decompressed
            return
        with reraise_as_corrupt(self.origin, "NPZ file"):
            stack = _npz_member_memmap(self.origin, self.key)
            if stack is None:
                with np.load(self.origin, allow_pickle=False) as archive:
                    self._decompressed = stack = archive[self.key]
        yield stack


class _Hdf5Source(_StackSource):
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


class _ArraySource(_StackSource):
    origin = IN_MEMORY

    def __init__(self, images: np.ndarray | list[np.ndarray]):
        self.images = images

    @contextlib.contextmanager
    def _stack(self) -> Iterator[np.ndarray | list[np.ndarray]]:
        yield self.images


# ---------------------------------------------------------------- helpers
def _take(stack: Any, positions: np.ndarray) -> list[np.ndarray] | np.ndarray:
    """Read ``stack[positions]``, by one slice when contiguous (fast for HDF5)."""
    if len(positions) == 0:
        return []
    if isinstance(stack, list):
        return [stack[position] for position in positions]
    if np.all(np.diff(positions) == 1):
        return stack[int(positions[0]) : int(positions[-1]) + 1]
    # HDF5 fancy indexing needs increasing, unique indices.
    unique, inverse = np.unique(positions, return_inverse=True)
    return np.asarray(stack[unique])[inverse]


def _check_stack_shape(shape: tuple[int, ...], origin: str | Path) -> int:
    """Number of images in a stack, after checking it is 3-D or 4-D."""
    if len(shape) not in (3, 4):
        raise ImageShapeError(
            origin, f"image stack has shape {shape}; expected (N, H, W) or (N, B, H, W)"
        )
    return int(shape[0])


def _images_key(requested: str | None, names: list[str], path: Path) -> str:
    """The HDF5 dataset holding the images."""
    key = requested or find_column(names, ARRAY_IMAGE_KEYS)
    if key is None or key not in names:
        raise MissingColumnError(path, key or "images", names)
    return key


def _columns_catalog(
    columns: dict[str, np.ndarray],
    count: int,
    origin: Path,
    *,
    labels_key: str | None,
    ids_key: str | None,
) -> Table:
    """Catalog from the 1-D arrays stored next to an image stack."""
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


def _npz_member_memmap(path: Path, key: str) -> np.ndarray | None:
    """Memory-map an uncompressed NPZ member; None when it is compressed."""
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


def _stem(path: Path) -> str:
    """File name without its (possibly compound, e.g. ``.fits.gz``) suffix."""
    suffix = file_suffix(path)
    return path.name[: -len(suffix)] if suffix else path.name


def _label_values(column) -> list[Any]:
    """Python values of a label column, None where masked, blank or NaN."""
    values = column.tolist()
    return [
        None
        if value is None
        or (isinstance(value, str) and not value.strip())
        or (isinstance(value, float) and math.isnan(value))
        else value
        for value in values
    ]


def _class_names(column) -> list[str]:
    """Sorted distinct labels of a column, as strings (numbers sorted numerically)."""
    return [
        str(value)
        for value in sorted({value for value in _label_values(column) if value is not None})
    ]


@contextlib.contextmanager
def _progress_bar(total: int, enabled: bool, description: str) -> Iterator[Callable[[int], None]]:
    """Yield a function that advances a rich progress bar (a no-op when disabled)."""
    if not enabled:
        yield lambda done: None
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True)) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.advance(task, done)
