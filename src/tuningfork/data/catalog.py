"""Read galaxy catalogs and recognise what each column is for.

:func:`read_catalog` returns an :class:`astropy.table.Table` whose first
column is a string ``id``.  :class:`CatalogSchema` then names the columns by
role (image files, bands, label, Galaxy Zoo votes, position, numeric extras),
recognising the usual spellings and accepting explicit overrides.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..config import Serialisable
from ..errors import (
    CatalogError,
    EmptyCatalogError,
    MissingColumnError,
    MissingFileError,
    UnsupportedFormatError,
)
from .readers import FITS_SUFFIXES, file_suffix, reraise_as_corrupt

if TYPE_CHECKING:
    from astropy.table import Table

CATALOG_FORMATS = {".csv": "ascii.csv", ".parquet": "parquet", ".pq": "parquet"} | dict.fromkeys(
    FITS_SUFFIXES, "fits"
)

# Candidate names per role, most specific first; matched case-insensitively.
ID_NAMES = (
    "id",
    "galaxy_id",
    "galaxyid",
    "objid",
    "obj_id",
    "object_id",
    "objectid",
    "dr7objid",
    "specobjid",
    "source_id",
    "ident",
    "asset_id",
    "iauname",
    "name",
)
FILE_NAMES = (
    "file",
    "filename",
    "file_name",
    "path",
    "filepath",
    "file_path",
    "image",
    "image_file",
    "image_path",
    "gal_filename",
    "cutout",
    "cutout_path",
)
HDU_NAMES = ("hdu", "gal_hdu", "ext", "extension")
LABEL_NAMES = ("label", "labels", "class", "class_name", "classification", "morphology", "target")
RA_NAMES = ("ra", "ra_deg", "raj2000", "ra_j2000", "alpha_j2000", "ra_icrs")
DEC_NAMES = (
    "dec",
    "dec_deg",
    "dej2000",
    "decj2000",
    "dec_j2000",
    "delta_j2000",
    "de_icrs",
    "dec_icrs",
)

_BAND_FILE = re.compile(r"^file_([A-Za-z0-9]+)$")
# Galaxy Zoo 2 tables (Willett et al. 2013): t01_smooth_or_features_a01_smooth_fraction
_GZ2_VOTE = re.compile(r"^t\d{2}_\w+_a\d{2}_\w+$", re.IGNORECASE)
# The Kaggle Galaxy Challenge solutions: Class1.1 ... Class11.6
_KAGGLE_VOTE = re.compile(r"^class\d+\.\d+$", re.IGNORECASE)
# One GZ2 answer comes in several flavours; keep one flavour, the best corrected first.
_VOTE_FLAVOURS = ("_debiased", "_weighted_fraction", "_fraction", "_frac", "_count", "")
_NOT_VOTES = ("_flag", "_weight")


def read_catalog(path: str | Path, *, id_column: str | None = None) -> Table:
    """Read a CSV, Parquet or FITS table and give it a string ``id`` column.

    Parameters
    ----------
    path : str or Path
        ``.csv``, ``.parquet``/``.pq`` or ``.fits``/``.fit``/``.fts`` (first
        table extension).
    id_column : str, optional
        Column holding the galaxy ids.  By default the first of
        :data:`ID_NAMES` present (``id``, ``galaxy_id``, ``objid``, ``ID``...);
        with none present the ids are the row numbers ``"0"``, ``"1"``...

    Returns
    -------
    astropy.table.Table
        The catalog with the id column renamed to ``id``, converted to
        strings and moved first.  Byte-string columns (FITS) are decoded.

    Raises
    ------
    MissingFileError, UnsupportedFormatError, CorruptFileError
        Unreadable file.
    EmptyCatalogError
        The table has no rows.
    MissingColumnError
        ``id_column`` is not in the table.
    CatalogError
        The ids are not unique.
    """
    from astropy.table import Table

    path = Path(path)
    fmt = CATALOG_FORMATS.get(file_suffix(path))
    if fmt is None:
        raise UnsupportedFormatError(path, f"catalog must be one of {', '.join(CATALOG_FORMATS)}")
    if not path.is_file():
        raise MissingFileError(path, "catalog")
    if path.stat().st_size == 0:
        raise EmptyCatalogError(path)
    with reraise_as_corrupt(path, "catalog"):
        table = Table.read(path, format=fmt, **_csv_options(path, id_column) if fmt == "ascii.csv" else {})
    if len(table) == 0:
        raise EmptyCatalogError(path)
    for name in table.colnames:
        if table[name].dtype.kind == "S":
            table[name] = np.char.decode(np.asarray(table[name]), "utf-8")
    return normalise_ids(table, path, id_column=id_column)


def _csv_options(path: Path, id_column: str | None) -> dict:
    """Reader options that keep CSV text as text.

    astropy's fast C reader takes the numeric prefix of a value, so a file
    ``nan.fits`` or ``inf_1.png`` would become a float; the pure-Python reader
    accepts a number only when the whole value is one.  Id and image-file
    columns are read as text whatever they hold (a file may be named ``123``,
    an id may have leading zeros).
    """
    import csv

    from astropy.io.ascii import convert_numpy

    with open(path, newline="", encoding="utf-8", errors="replace") as handle:
        header = next(csv.reader(handle), [])
    text_names = {name.lower() for name in (*ID_NAMES, *FILE_NAMES, id_column or "")}
    text_columns = [
        name.strip()
        for name in header
        if name.strip().lower() in text_names or _BAND_FILE.match(name.strip())
    ]
    return {
        "fast_reader": False,
        "converters": {name: [convert_numpy(str)] for name in text_columns},
    }


def normalise_ids(table: Table, source: str | Path, *, id_column: str | None = None) -> Table:
    """Return a copy of ``table`` whose first column is a unique string ``id``.

    Parameters
    ----------
    table : astropy.table.Table
        Any catalog.
    source : str or Path
        File (or description) named in error messages.
    id_column : str, optional
        Column with the ids; recognised from :data:`ID_NAMES` by default, and
        made from row numbers when no such column exists.

    Returns
    -------
    astropy.table.Table
        A new table; ``table`` itself is not modified.

    Raises
    ------
    MissingColumnError
        ``id_column`` is not in the table.
    CatalogError
        The ids repeat, are missing, or an unrelated ``id`` column is in the way.
    """
    from astropy.table import Column

    table = table.copy(copy_data=False)
    if id_column is not None and id_column not in table.colnames:
        raise MissingColumnError(source, id_column, table.colnames)
    chosen = id_column or find_column(table.colnames, ID_NAMES)
    if chosen is None:
        ids = np.array([str(row) for row in range(len(table))])
    else:
        if chosen != "id" and "id" in table.colnames:
            raise CatalogError(
                f"{source}: ids come from '{chosen}' but an unrelated 'id' column exists"
            )
        ids = _ids_as_strings(table[chosen], source, chosen)
        table.remove_column(chosen)
    unique, counts = np.unique(ids, return_counts=True)
    if len(unique) < len(ids):
        repeated = ", ".join(unique[counts > 1][:5])
        raise CatalogError(f"{source}: {int((counts > 1).sum())} ids repeat (e.g. {repeated})")
    table.add_column(Column(ids, name="id"), index=0)
    return table


def _ids_as_strings(column, source: str | Path, name: str) -> np.ndarray:
    """Convert an id column to strings, writing integral floats without '.0'."""
    if np.ma.is_masked(column):
        raise CatalogError(
            f"{source}: id column '{name}' has {int(np.ma.count_masked(column))} empty values"
        )
    values = np.asarray(column)
    if (
        values.dtype.kind == "f"
        and np.all(np.isfinite(values))
        and np.all(values == np.round(values))
    ):
        values = values.astype(np.int64)
    return np.array([str(value).strip() for value in values.tolist()])


def find_column(colnames: Sequence[str], candidates: Sequence[str]) -> str | None:
    """Return the first column whose name matches a candidate, ignoring case.

    Parameters
    ----------
    colnames : sequence of str
        Columns of a table.
    candidates : sequence of str
        Accepted spellings in order of preference.

    Returns
    -------
    str or None
        The column's actual name, or None when no candidate is present.
    """
    by_lower = {name.lower(): name for name in reversed(list(colnames))}
    for candidate in candidates:
        if candidate.lower() in by_lower:
            return by_lower[candidate.lower()]
    return None


@dataclass
class CatalogSchema(Serialisable):
    """The role of each catalog column.

    ``to_dict`` / ``from_dict`` (from :class:`~tuningfork.config.Serialisable`)
    turn it into plain data for ``describe`` and JSON, and back.

    Attributes
    ----------
    file_column : str or None
        Path of each row's image file (relative to the catalog's folder).
    band_columns : dict of str to str
        Band name to the column holding that band's file, in band order
        (``{"g": "file_g", "r": "file_r"}``); empty for single-file rows.
    hdu_column : str or None
        FITS extension of each row's image within its file.
    label_column : str or None
        Class label of each row.
    vote_columns : list of str
        Galaxy Zoo answer columns (vote fractions or counts).
    vote_kind : str or None
        ``"fraction"`` when every vote value is within [0, 1], else ``"count"``.
    ra_column, dec_column : str or None
        Sky position, degrees.
    extra_columns : list of str
        Every other numeric column.
    """

    file_column: str | None = None
    band_columns: dict[str, str] = field(default_factory=dict)
    hdu_column: str | None = None
    label_column: str | None = None
    vote_columns: list[str] = field(default_factory=list)
    vote_kind: str | None = None
    ra_column: str | None = None
    dec_column: str | None = None
    extra_columns: list[str] = field(default_factory=list)

    @classmethod
    def infer(
        cls,
        table,
        source: str | Path = "catalog",
        *,
        file_column: str | None = None,
        band_columns: Mapping[str, str] | Sequence[str] | None = None,
        hdu_column: str | None = None,
        label_column: str | None = None,
        vote_columns: Sequence[str] | None = None,
        ra_column: str | None = None,
        dec_column: str | None = None,
    ) -> CatalogSchema:
        """Recognise column roles from their names, honouring explicit choices.

        Parameters
        ----------
        table : astropy.table.Table
            A catalog (normally from :func:`read_catalog`).
        source : str or Path
            Named in error messages.
        file_column, hdu_column, label_column, ra_column, dec_column : str, optional
            Explicit column for that role.
        band_columns : mapping or sequence of str, optional
            Band name to file column, or a list of file columns (band names
            taken from a ``file_<band>`` name, else the column name).  By
            default every ``file_<band>`` column, in table order.
        vote_columns : sequence of str, optional
            Galaxy Zoo vote columns.  By default GZ2-style
            ``t01_..._a01_..._fraction`` columns (one flavour: debiased,
            weighted fraction, fraction, then count) or Kaggle ``Class1.1``.

        Returns
        -------
        CatalogSchema

        Raises
        ------
        MissingColumnError
            An explicitly named column is not in the table.
        """
        names = list(table.colnames)
        explicit = [file_column, hdu_column, label_column, ra_column, dec_column]
        explicit += list(
            band_columns.values() if isinstance(band_columns, Mapping) else band_columns or []
        )
        explicit += list(vote_columns or [])
        for name in explicit:
            if name is not None and name not in names:
                raise MissingColumnError(source, name, names)

        bands = _band_mapping(band_columns, names)
        file_column = file_column or _find_string_column(table, FILE_NAMES)
        votes = list(vote_columns) if vote_columns is not None else _find_vote_columns(names)
        schema = cls(
            file_column=file_column,
            band_columns=bands,
            hdu_column=hdu_column or find_column(names, HDU_NAMES),
            label_column=label_column or find_column(names, LABEL_NAMES),
            vote_columns=votes,
            vote_kind=_vote_kind(table, votes),
            ra_column=ra_column or find_column(names, RA_NAMES),
            dec_column=dec_column or find_column(names, DEC_NAMES),
        )
        taken = {"id", *schema.image_columns, *votes}
        taken |= {
            schema.file_column,
            schema.hdu_column,
            schema.label_column,
            schema.ra_column,
            schema.dec_column,
        }
        schema.extra_columns = [
            name
            for name in names
            if name not in taken and table[name].ndim == 1 and table[name].dtype.kind in "iuf"
        ]
        return schema

    @property
    def image_columns(self) -> list[str]:
        """Columns naming image files: the band columns, else the file column."""
        if self.band_columns:
            return list(self.band_columns.values())
        return [self.file_column] if self.file_column else []

    @property
    def bands(self) -> list[str]:
        """Band names when images are assembled from one file per band."""
        return list(self.band_columns)

    def image_paths(self, table, base_dir: str | Path) -> list[tuple[str, ...]]:
        """Return each row's image files, relative paths taken from ``base_dir``.

        Parameters
        ----------
        table : astropy.table.Table
            The catalog this schema describes.
        base_dir : str or Path
            Folder that relative paths start from (the catalog's folder).

        Returns
        -------
        list of tuple of str
            One tuple per row: one path per band, or a single path.  Strings
            rather than :class:`~pathlib.Path`: a collection holds one per
            galaxy, and a Path costs twice the memory and time
            (benchmarks/results/scale.md, client costs).
        """
        base_dir = os.fspath(base_dir)
        columns = [np.asarray(table[name]).astype(str) for name in self.image_columns]
        return [tuple(os.path.join(base_dir, value.strip()) for value in row) for row in zip(*columns)]


def _find_string_column(table, candidates: Sequence[str]) -> str | None:
    """Like :func:`find_column` but only among text columns (paths are text)."""
    text = [name for name in table.colnames if table[name].dtype.kind in "US"]
    return find_column(text, candidates)


def _band_mapping(
    band_columns: Mapping[str, str] | Sequence[str] | None, names: list[str]
) -> dict[str, str]:
    """Band name to file column, from an explicit choice or ``file_<band>`` names."""
    if isinstance(band_columns, Mapping):
        return dict(band_columns)
    chosen = (
        band_columns
        if band_columns is not None
        else [name for name in names if _BAND_FILE.match(name) and name.lower() not in FILE_NAMES]
    )
    bands = {}
    for name in chosen:
        match = _BAND_FILE.match(name)
        bands[match.group(1) if match else name] = name
    return bands


def _find_vote_columns(names: list[str]) -> list[str]:
    """Galaxy Zoo vote columns of one flavour, or the Kaggle ``ClassN.M`` columns."""
    gz2 = [
        name for name in names if _GZ2_VOTE.match(name) and not name.lower().endswith(_NOT_VOTES)
    ]
    for flavour in _VOTE_FLAVOURS:
        chosen = [name for name in gz2 if _vote_flavour(name) == flavour]
        if chosen:
            return chosen
    return [name for name in names if _KAGGLE_VOTE.match(name)]


def _vote_flavour(name: str) -> str:
    """The longest flavour suffix a GZ2 column ends with ('' for a bare answer)."""
    lowered = name.lower()
    return max((flavour for flavour in _VOTE_FLAVOURS if lowered.endswith(flavour)), key=len)


def _vote_kind(table, votes: list[str]) -> str | None:
    """'fraction' when all vote values lie in [0, 1], else 'count'."""
    if not votes:
        return None
    values = np.concatenate(
        [np.ma.filled(np.ma.asarray(table[name], dtype=float), np.nan) for name in votes]
    )
    return "fraction" if np.nanmax(values, initial=0.0) <= 1.0 else "count"
