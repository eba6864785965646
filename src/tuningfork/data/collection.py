"""GalaxyCollection: the one lazy entry point to any galaxy data set.

A collection pairs a catalog (an astropy Table with a string ``id`` column,
one row per galaxy) with an *image source* (:mod:`tuningfork.data.sources`)
that reads pixels on demand: image files named by the catalog, an HDF5
dataset, an NPY/NPZ stack or in-memory arrays.  :meth:`GalaxyCollection.open`
recognises which one a path is.  Sources hold paths and positions, never
open file handles, so collections and their shards pickle cheaply to worker
processes, and images are only ever read one batch at a time
(:mod:`tuningfork.data.batches`).
"""

from __future__ import annotations

import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import (
    CatalogError,
    ConfigError,
    InputFileError,
    MissingColumnError,
    MissingFileError,
    MissingImagesError,
)
from .batches import (
    Batch,
    Galaxy,
    check_batch_size,
    concatenate_batches,
    preprocess_images,
    progress_bar,
)
from .catalog import CATALOG_FORMATS, CatalogSchema, normalise_ids, read_catalog
from .readers import (
    FITS_SUFFIXES,
    IMAGE_SUFFIXES,
    file_suffix,
    galaxy_hdus,
    image_format,
    is_fits_table,
    reraise_as_corrupt,
)
from .sources import (
    HDF5_SUFFIXES,
    IN_MEMORY,
    STACK_SUFFIXES,
    ArraySource,
    FileSource,
    Hdf5Source,
    ImageSource,
    NpySource,
    NpzSource,
    check_stack_shape,
    columns_catalog,
    file_stem,
    find_images_key,
)

if TYPE_CHECKING:
    from astropy.table import Table

# Catalog file names that make a folder open as that catalog rather than as loose images.
FOLDER_CATALOG_NAMES = ("catalog.csv", "catalog.parquet", "catalog.fits")


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
        source: ImageSource,
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

    def __getstate__(self) -> dict:
        # A shard sent to a worker carries its own rows' paths (or pixels),
        # not the whole survey's: with the source shared with the parent
        # collection, every task carried the full input list, and workers
        # keep the arguments of the tasks they ran until the run ends.
        state = dict(self.__dict__)
        state["_source"], state["_positions"] = self._source.restricted(self._positions)
        return state

    # ----------------------------------------------------------- constructors
    @classmethod
    def open(
        cls,
        path: str | Path,
        *,
        label_column: str | None = None,
        skip_missing: bool = False,
        check_files: bool = True,
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
        check_files : bool
            Catalogs only: check that every image file exists (see
            :meth:`from_catalog`).
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
                return cls.from_catalog(catalogs[0], label_column=label_column, skip_missing=skip_missing,
                                        check_files=check_files, **options)
            return cls.from_directory(path, label_column=label_column, **options)
        suffix = file_suffix(path)
        if suffix in HDF5_SUFFIXES:
            return cls.from_hdf5(path, label_column=label_column, **options)
        if suffix in STACK_SUFFIXES:
            return cls.from_numpy(path, label_column=label_column, **options)
        if suffix in CATALOG_FORMATS and (suffix not in FITS_SUFFIXES or is_fits_table(path)):
            return cls.from_catalog(path, label_column=label_column, skip_missing=skip_missing,
                                    check_files=check_files, **options)
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
        check_files: bool = True,
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
        check_files : bool
            Check that every file exists now (one ``stat`` per file, in this
            process).  False leaves it to whoever reads the images: a missing
            file then raises :class:`~tuningfork.errors.MissingFileError` when
            its galaxy is read, or becomes a row of a catalog's failures
            table.  The choice for 10^7 and more files on a cluster file
            system, where each check is a metadata request.

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
        ConfigError
            ``skip_missing`` without ``check_files``.
        """
        if skip_missing and not check_files:
            raise ConfigError(f"{path}: skipping missing files needs the file check (check_files)")
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
            row for row, row_files in enumerate(files) if not all(map(os.path.isfile, row_files))
        ] if check_files else []
        if missing_rows and not skip_missing:
            first_missing = [next(f for f in files[row] if not os.path.isfile(f)) for row in missing_rows]
            raise MissingImagesError(path, first_missing)
        if missing_rows:
            warnings.warn(
                f"{path}: skipped {len(missing_rows)} rows whose image files are missing",
                stacklevel=2,
            )
        kept = np.setdiff1d(np.arange(len(table)), missing_rows)
        source = FileSource([files[row] for row in kept], [hdus[row] for row in kept])
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
            file_stem(file): file
            for file in path.iterdir()
            if file.is_file() and file_suffix(file) in IMAGE_SUFFIXES
        }
        if not images:
            raise InputFileError(path, f"folder holds no image files ({', '.join(IMAGE_SUFFIXES)})")
        ids = sorted(images)
        catalog = Table({"id": ids, "file": [images[i].name for i in ids]})
        source = FileSource([(images[i],) for i in ids], [hdu] * len(ids))
        return cls(source, catalog, kind="directory", origin=path, label_column=label_column)

    @classmethod
    def from_file(
        cls, path: str | Path, *, hdu: int | str | None = None, label_column: str | None = None
    ) -> GalaxyCollection:
        """Wrap one image file as a collection: one galaxy, or one per FITS image HDU.

        Parameters
        ----------
        path : str or Path
            FITS image, PNG, JPEG or NPY file.  A multi-extension FITS file
            with several galaxy images (see
            :func:`~tuningfork.data.readers.galaxy_hdus`; masks and weight
            maps do not count) opens as one galaxy per image HDU, with ids
            ``<stem>[<EXTNAME>]`` when every HDU has its own name, else
            ``<stem>[<index>]``, and an ``hdu`` column.
        hdu : int or str, optional
            FITS extension (see :func:`~tuningfork.data.read_image`); given,
            only that HDU is read.
        label_column : str, optional
            As in :meth:`from_directory`.

        Returns
        -------
        GalaxyCollection
        """
        from astropy.table import Table

        path = Path(path)
        kind = image_format(path)
        if not path.is_file():
            raise MissingFileError(path, "image file")
        hdus = galaxy_hdus(path) if kind == "fits" and hdu is None else []
        if len(hdus) > 1:
            names = [name for _, name in hdus]
            unique_names = all(names) and len(set(names)) == len(names)
            keys = names if unique_names else [str(index) for index, _ in hdus]
            catalog = Table(
                {
                    "id": [f"{file_stem(path)}[{key}]" for key in keys],
                    "file": [path.name] * len(hdus),
                    "hdu": [index for index, _ in hdus],
                }
            )
            source = FileSource([(path,)] * len(hdus), [index for index, _ in hdus])
        else:
            catalog = Table({"id": [file_stem(path)], "file": [path.name]})
            source = FileSource([(path,)], [hdu])
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
            images_key = find_images_key(images_key, list(datasets), path)
            count = check_stack_shape(datasets[images_key].shape, path)
            columns = {
                name: item[()]
                for name, item in datasets.items()
                if name != images_key and item.ndim == 1 and item.shape[0] == count
            }
        catalog = columns_catalog(columns, count, path, labels_key=labels_key, ids_key=ids_key)
        source = Hdf5Source(path, images_key)
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
            count = check_stack_shape(shape, path)
            catalog = Table({"id": [str(row) for row in range(count)]})
            return cls(
                NpySource(path), catalog, kind="npy", origin=path, label_column=label_column
            )
        source = NpzSource(path, images_key)
        with reraise_as_corrupt(path, "NPZ file"), np.load(path, allow_pickle=False) as archive:
            if images_key not in archive.files:
                raise MissingColumnError(path, images_key, archive.files)
            count = check_stack_shape(source.shape, path)
            others = {name: archive[name] for name in archive.files if name != images_key}
        columns = {
            name: values
            for name, values in others.items()
            if values.ndim == 1 and len(values) == count
        }
        catalog = columns_catalog(columns, count, path, labels_key=labels_key, ids_key=ids_key)
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
            count = check_stack_shape(images.shape, IN_MEMORY)
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
        return cls(ArraySource(images), table, kind="arrays", label_column=label_column)

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
        (image,) = self._read(index, index + 1, require_finite=True)
        return Galaxy(self._ids[index], image, self._rows(index, index + 1)[0])

    def __iter__(self) -> Iterator[Galaxy]:
        """Read the galaxies one by one (in batches behind the scenes); sizes may differ."""
        for start, stop in self._ranges(64, progress=False):
            images = self._read(start, stop, require_finite=True)
            yield from map(Galaxy, self._ids[start:stop], images, self._rows(start, stop))

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
            :class:`~tuningfork.preprocessing.Preprocessor`, whose ``batch``
            method is used on a whole stack when the raw images share a shape,
            and whose ``decode_scale`` lets PNG/JPEG files decode at the
            reduced resolution its output allows).
        progress : bool
            Show a rich progress bar on stderr.

        Yields
        ------
        Batch
            ``images`` is one float32 ``(n, bands, H, W)`` array.

        Raises
        ------
        ImageShapeError
            The images of a batch (after ``preprocess``) differ in shape; the
            error names the first odd one.  Iterate the collection, or index
            it, to read galaxies of several sizes one by one.
        """
        scale_for = getattr(preprocess, "decode_scale", None)
        for start, stop in self._ranges(batch_size, progress):
            if scale_for is None:
                images, scales = self._read(start, stop, require_finite=True), None
            else:
                images, scales = self._source.read_scaled(self._positions[start:stop], scale_for)
            yield Batch(self._ids[start:stop], self._stacked(images, start, stop, preprocess, scales),
                        self._rows(start, stop))

    def scaled_images(self, scale_for: Callable[[int, int], int]) -> tuple[list[np.ndarray], list[int]]:
        """Every image, decoded at the reduced resolution ``scale_for`` allows (PNG/JPEG files only).

        Parameters
        ----------
        scale_for : callable
            ``scale_for(height, width)`` gives the allowed reduction, 1, 2, 4
            or 8 (e.g. the smallest of the stages' ``Preprocessor.decode_scale``).

        Returns
        -------
        images : list of ndarray
            float32 ``(bands, h, w)``, in order.
        scales : list of int
            The reduction of each, for ``Preprocessor.batch(..., scale=)``.

        Raises
        ------
        InputFileError
            An image cannot be read.
        """
        return self._source.read_scaled(self._positions, scale_for)

    def raw_images(self) -> list[np.ndarray]:
        """Every image as stored, without preprocessing (for callers that preprocess them several ways).

        Returns
        -------
        list of ndarray
            float32 ``(bands, H, W)``, one per galaxy, in order.

        Raises
        ------
        InputFileError
            An image cannot be read.
        """
        return self._read(0, len(self), require_finite=True)

    def read_images(
        self,
        preprocess: Callable[[np.ndarray], np.ndarray] | None = None,
        batch_size: int = 64,
        progress: bool = False,
    ) -> np.ndarray:
        """Read every image, through ``preprocess``, into one array.

        Parameters
        ----------
        preprocess : callable, optional
            As in :meth:`iter_batches`; it must give every image one shape.
        batch_size : int
            Galaxies read (and preprocessed) at a time.
        progress : bool
            Show a rich progress bar on stderr.

        Returns
        -------
        ndarray
            float32 ``(n_galaxies, bands, H, W)``.

        Raises
        ------
        ImageShapeError
            The images differ in shape after ``preprocess``.
        """
        return concatenate_batches(self.iter_batches(batch_size, preprocess, progress), self.name)

    def sed_values(self, columns: Sequence[str]) -> np.ndarray:
        """Catalog values of the SED columns, NaN where masked or non-finite.

        Parameters
        ----------
        columns : sequence of str
            One column per band (fluxes or magnitudes).

        Returns
        -------
        ndarray
            float32 ``(n_galaxies, n_columns)``.

        Raises
        ------
        MissingColumnError
            A column is not in the catalog.
        """
        values = np.full((len(self), len(columns)), np.nan, dtype=np.float32)
        for position, name in enumerate(columns):
            if name not in self.catalog.colnames:
                raise MissingColumnError(self.name, name, self.catalog.colnames)
            column = np.ma.filled(np.ma.asarray(self.catalog[name], dtype=np.float64), np.nan)
            values[:, position] = np.where(np.isfinite(column), column, np.nan)
        return values

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
        for start, stop in self._ranges(batch_size, progress):
            for image in self._read(start, stop, require_finite=False):
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
    def _ranges(self, batch_size: int, progress: bool) -> Iterator[tuple[int, int]]:
        """Consecutive ``(start, stop)`` rows of at most ``batch_size``, advancing the progress bar."""
        batch_size = check_batch_size(batch_size, self.name)
        with progress_bar(len(self), progress, f"reading {self.name}") as advance:
            for start in range(0, len(self), batch_size):
                stop = min(start + batch_size, len(self))
                yield start, stop
                advance(stop - start)

    def _read(self, start: int, stop: int, require_finite: bool) -> list[np.ndarray]:
        return self._source.read(self._positions[start:stop], require_finite=require_finite)

    def _rows(self, start: int, stop: int) -> list[dict[str, Any]]:
        names = self.catalog.colnames
        columns = [self.catalog[name][start:stop].tolist() for name in names]
        return [dict(zip(names, values)) for values in zip(*columns)]

    def _stacked(
        self,
        images: list[np.ndarray],
        start: int,
        stop: int,
        preprocess: Callable[[np.ndarray], np.ndarray] | None,
        scales: list[int] | None = None,
    ) -> np.ndarray:
        """The images of rows ``start:stop`` (decoded at ``scales``) through ``preprocess``, as one stack."""
        def where(index: int) -> str:
            return self._source.where(int(self._positions[start + index]))

        return preprocess_images(images, preprocess, where, f"{self.name}[{start}:{stop}]", scales)


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
