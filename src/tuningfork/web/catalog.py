"""The explorer's read-only view of a catalog: rows, columns by role, images, neighbours.

A catalog is either a folder written by ``tuningfork catalog`` (its
``catalog.parquet``, the data set named in its ``config.json``, and
optionally ``embeddings.parquet`` with its faiss index) or a plain
predictions Parquet from ``tuningfork predict``. Columns the explorer
knows (probabilities, vote fractions, cluster group, outlier score,
nearest neighbours) are shown when present; every other numeric column is
shown as a measurement (the morphometry).

Nothing here writes: the catalog and the data set are only read, and an
image is read only from a file inside the data set's root folder.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data import GalaxyCollection, read_image
from ..data.labels import OTHER_LABEL
from ..errors import CatalogError, ConfigError, InputFileError, MissingFileError

CATALOG_FILE = "catalog.parquet"
CONFIG_FILE = "config.json"
#: Names the cluster group and outlier score go by, first match wins.
GROUP_COLUMNS = ("group", "cluster_group", "cluster")
OUTLIER_COLUMNS = ("outlier_score", "outlier")
_NEIGHBOUR = re.compile(r"^(neighbou?r|nearest)(_id)?_?(\d+)$")
_PREDICTION_COLUMNS = {"id", "file", "ra", "dec", "predicted_class", "confidence", "threshold", "triage",
                       "expert_priority", "expert_rank", "error"}
#: Degrees per arcsecond.
ARCSEC = 1.0 / 3600.0


class GalaxyNotFound(CatalogError, KeyError):
    """No galaxy of that id in the catalog (or its image is not readable from the data set's root)."""

    def __init__(self, galaxy_id: str, where: str):
        super().__init__(f"{where}: no galaxy '{galaxy_id}'")


@dataclass(frozen=True)
class Roles:
    """Which catalog columns play which part, found by name."""

    probabilities: dict
    fractions: dict
    group: str | None
    outlier: str | None
    neighbours: list
    measurements: list


def _roles(columns: list[str], numeric: set[str]) -> Roles:
    probabilities = {name[len("prob_"):]: name for name in columns if name.startswith("prob_")}
    fractions = {name[: -len("_fraction")]: name for name in columns
                 if name.endswith("_fraction") and not name.startswith(("group", "second_group"))}
    group = next((name for name in GROUP_COLUMNS if name in columns), None)
    outlier = next((name for name in OUTLIER_COLUMNS if name in columns), None)
    neighbours = sorted((name for name in columns if _NEIGHBOUR.match(name)),
                        key=lambda name: int(_NEIGHBOUR.match(name).group(3)))
    known = (_PREDICTION_COLUMNS | set(probabilities.values()) | set(fractions.values()) | set(neighbours)
             | {group, outlier})
    measurements = [name for name in columns if name in numeric and name not in known
                    and not name.startswith(("group", "second_group"))]
    return Roles(probabilities, fractions, group, outlier, neighbours, measurements)


def _json_value(value):
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value if isinstance(value, (int, str, bool)) else str(value)


class ExplorerCatalog:
    """A catalog opened for the explorer.

    Parameters
    ----------
    path : str or Path
        A catalog folder, or a predictions Parquet (``.parquet``).
    data : str or Path, optional
        The data set the images come from; by default the one named in a
        catalog folder's ``config.json``.  Without either, images are read
        from the catalog's ``file`` column, inside the folder those files
        share.
    data_root : str or Path, optional
        The folder images may be read from; by default the data set's
        folder (or the files' shared folder).
    class_names : sequence of str, optional
        The classes to label; by default the ``prob_<class>`` columns.

    Raises
    ------
    MissingFileError
        No catalog at ``path``.
    CatalogError
        The catalog has no ``id`` column or repeats an id.
    """

    def __init__(self, path, data=None, data_root=None, class_names=None):
        import pandas as pd
        import pyarrow.parquet as pq

        path = Path(path)
        config = {}
        if path.is_dir():
            if (path / CONFIG_FILE).is_file():
                config = json.loads((path / CONFIG_FILE).read_text())
            path = path / CATALOG_FILE
        if not path.is_file():
            raise MissingFileError(path, "catalog")
        self.path = path
        frame = pq.read_table(path).to_pandas()
        if "id" not in frame.columns:
            raise CatalogError(f"{path}: no 'id' column")
        frame["id"] = frame["id"].astype(str)
        if frame["id"].duplicated().any():
            raise CatalogError(f"{path}: repeated id '{frame['id'][frame['id'].duplicated()].iloc[0]}'")
        self.frame = _queue_order(frame).reset_index(drop=True)
        self._row_of = {galaxy_id: row for row, galaxy_id in enumerate(self.frame["id"])}
        numeric = {name for name in frame.columns if pd.api.types.is_numeric_dtype(frame[name])
                   and not pd.api.types.is_bool_dtype(frame[name])}
        self.roles = _roles(list(frame.columns), numeric)
        self.class_names = list(class_names) if class_names else list(self.roles.probabilities)
        if not self.class_names and "predicted_class" in frame.columns:
            self.class_names = sorted(set(frame["predicted_class"].astype(str)))
        data = data or config.get("input")
        self.collection = None
        if data is not None and "file" not in frame.columns:
            self.collection = GalaxyCollection.open(data)
            self._collection_row = {galaxy_id: row for row, galaxy_id in enumerate(self.collection.ids)}
        self.root = self._find_root(data, data_root)
        self._index = None
        self._embeddings_path = next(iter(sorted(path.parent.glob("embeddings.parquet"))), None) if config else None

    def _find_root(self, data, data_root) -> Path | None:
        if data_root is not None:
            return Path(data_root).resolve()
        if data is not None:
            data = Path(data).resolve()
            return data if data.is_dir() else data.parent
        if "file" in self.frame.columns and len(self.frame):
            return Path(os.path.commonpath([str(Path(name).parent) for name in self.frame["file"].astype(str)]))
        return None

    # -------------------------------------------------------------- rows
    def __len__(self) -> int:
        return len(self.frame)

    @property
    def label_choices(self) -> list[dict]:
        """The labels offered to experts, with their keys: 1-9 for classes, 0 for other."""
        choices = [{"label": name, "key": str(number + 1) if number < 9 else None}
                   for number, name in enumerate(self.class_names)]
        return choices + [{"label": OTHER_LABEL, "key": "0", "title": "other / artefact"}]

    def row(self, galaxy_id: str) -> int:
        """Row of a galaxy in queue order; :class:`GalaxyNotFound` when absent."""
        try:
            return self._row_of[str(galaxy_id)]
        except KeyError:
            raise GalaxyNotFound(galaxy_id, str(self.path)) from None

    def summary(self, rows) -> list[dict]:
        """The queue's view of some rows: id, prediction, triage, group, outlier score, position."""
        columns = [name for name in ("id", "predicted_class", "confidence", "triage", "expert_rank", "ra", "dec")
                   if name in self.frame.columns]
        extra = {"group": self.roles.group, "outlier_score": self.roles.outlier}
        records = []
        for row in rows:
            values = self.frame.iloc[row]
            record = {name: _json_value(values[name]) for name in columns}
            record.update({key: _json_value(values[name]) for key, name in extra.items() if name})
            records.append(record)
        return records

    def galaxy(self, galaxy_id: str) -> dict:
        """Everything the galaxy page shows about one galaxy (neighbours excepted)."""
        row = self.row(galaxy_id)
        values = self.frame.iloc[row]
        record = self.summary([row])[0]
        record["position"] = row
        record["previous"] = str(self.frame["id"].iloc[row - 1]) if row > 0 else None
        record["next"] = str(self.frame["id"].iloc[row + 1]) if row + 1 < len(self.frame) else None
        record["probabilities"] = {name: _json_value(values[column]) for name, column in self.roles.probabilities.items()}
        record["vote_fractions"] = {name: _json_value(values[column]) for name, column in self.roles.fractions.items()}
        record["measurements"] = {name: _json_value(values[name]) for name in self.roles.measurements}
        group_columns = [name for name in self.frame.columns if name.startswith(("group", "second_group"))]
        record["cluster"] = {name: _json_value(values[name]) for name in group_columns}
        record["has_similar"] = bool(self.roles.neighbours) or self._embeddings_path is not None
        return record

    def filtered(self, *, predicted_class=None, triage=None, group=None, min_confidence=None,
                 max_confidence=None, min_outlier=None, max_outlier=None, exclude=()) -> np.ndarray:
        """Rows (in queue order) that pass every filter given.

        Parameters
        ----------
        predicted_class, triage, group : str, optional
            Keep only rows with this value.
        min_confidence, max_confidence, min_outlier, max_outlier : float, optional
            Inclusive bounds.
        exclude : collection of str
            Ids to leave out (those already labelled, say).

        Returns
        -------
        ndarray of int
        """
        frame = self.frame
        keep = np.ones(len(frame), dtype=bool)
        for value, column in ((predicted_class, "predicted_class"), (triage, "triage"), (group, self.roles.group)):
            if value not in (None, ""):
                if column not in frame.columns:
                    raise ConfigError(f"{self.path}: no '{column or 'group'}' column to filter on")
                keep &= frame[column].astype(str).to_numpy() == str(value)
        for low, high, column in ((min_confidence, max_confidence, "confidence"),
                                  (min_outlier, max_outlier, self.roles.outlier)):
            if low is None and high is None:
                continue
            if column not in frame.columns:
                raise ConfigError(f"{self.path}: no '{column or 'outlier_score'}' column to filter on")
            values = frame[column].to_numpy(dtype=np.float64)
            if low is not None:
                keep &= values >= low
            if high is not None:
                keep &= values <= high
        if exclude:
            keep &= ~frame["id"].isin(list(exclude)).to_numpy()
        return np.flatnonzero(keep)

    def distinct(self, column: str | None) -> list[str]:
        """Sorted distinct values of a column (for the filters' menus)."""
        if column is None or column not in self.frame.columns:
            return []
        return sorted({str(value) for value in self.frame[column].dropna()})

    # ---------------------------------------------------------------- search
    def search(self, query: str | None = None, ra: float | None = None, dec: float | None = None,
               radius_arcsec: float = 10.0, limit: int = 20) -> list[dict]:
        """Galaxies whose id contains ``query``, or within ``radius_arcsec`` of (``ra``, ``dec``), nearest first."""
        if ra is not None and dec is not None:
            if "ra" not in self.frame.columns or "dec" not in self.frame.columns:
                raise ConfigError(f"{self.path}: no ra/dec columns to search by position")
            separation = _separation_deg(self.frame["ra"].to_numpy(np.float64), self.frame["dec"].to_numpy(np.float64),
                                         float(ra), float(dec))
            rows = np.flatnonzero(separation <= radius_arcsec * ARCSEC)
            rows = rows[np.argsort(separation[rows])][:limit]
            records = self.summary(rows)
            for record, row in zip(records, rows):
                record["separation_arcsec"] = float(separation[row] / ARCSEC)
            return records
        if not query:
            return []
        query = str(query)
        if query in self._row_of:
            return self.summary([self._row_of[query]])
        ids = self.frame["id"]
        return self.summary(np.flatnonzero(ids.str.contains(query, regex=False).to_numpy())[:limit])

    def similar(self, galaxy_id: str, k: int = 8) -> list[dict]:
        """Nearest galaxies by the catalog's neighbour columns, else by the folder's faiss index."""
        row = self.row(galaxy_id)
        if self.roles.neighbours:
            ids = [str(value) for value in self.frame.iloc[row][self.roles.neighbours].tolist()
                   if value is not None and str(value) not in ("", "nan", str(galaxy_id))][:k]
        elif self._embeddings_path is not None:
            table = self._faiss().neighbours(str(galaxy_id), k + 1)
            ids = [str(value) for value in table["id"] if str(value) != str(galaxy_id)][:k]
        else:
            return []
        return self.summary([self._row_of[value] for value in ids if value in self._row_of])

    def _faiss(self):
        if self._index is None:
            from ..embeddings.search import SimilarityIndex, index_path_for
            from ..embeddings.store import load_embeddings

            embeddings = load_embeddings(self._embeddings_path)
            # The saved index only: building one would write into the catalog folder.
            if not index_path_for(embeddings.path).is_file():
                raise MissingFileError(index_path_for(embeddings.path), "faiss index")
            self._index = SimilarityIndex.load(embeddings)
        return self._index

    # ---------------------------------------------------------------- images
    def image(self, galaxy_id: str) -> np.ndarray:
        """The galaxy's pixels, float32 (bands, H, W), read only from inside the data set's root.

        Raises
        ------
        GalaxyNotFound
            Unknown id, or an image file outside the root (so a catalog
            pointing elsewhere cannot be used to read other files).
        """
        row = self.row(galaxy_id)
        if self.collection is not None:
            position = self._collection_row.get(str(galaxy_id))
            if position is None:
                raise GalaxyNotFound(galaxy_id, self.collection.name)
            return self.collection[position].image
        if "file" not in self.frame.columns or self.root is None:
            raise GalaxyNotFound(galaxy_id, f"{self.path} (no image files)")
        path = Path(str(self.frame["file"].iloc[row]))
        if not path.is_absolute():
            path = self.root / path
        path = path.resolve()
        if not path.is_relative_to(self.root) or not path.is_file():
            raise GalaxyNotFound(galaxy_id, f"{self.root} (image file)")
        try:
            return read_image(path, require_finite=False)
        except InputFileError:
            raise GalaxyNotFound(galaxy_id, str(path)) from None


def _separation_deg(ra: np.ndarray, dec: np.ndarray, ra0: float, dec0: float) -> np.ndarray:
    """Great-circle separation in degrees (haversine, exact at small angles)."""
    ra, dec, ra0, dec0 = (np.radians(value) for value in (ra, dec, ra0, dec0))
    term = np.sin((dec - dec0) / 2) ** 2 + np.cos(dec) * np.cos(dec0) * np.sin((ra - ra0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(term, 0.0, 1.0))))


def _queue_order(frame):
    """Expert-priority order: the expert queue by rank, then the rest least confident first."""
    keys = []
    if "expert_rank" in frame.columns:
        keys.append(frame["expert_rank"].fillna(np.inf).to_numpy(np.float64))
    if "confidence" in frame.columns:
        keys.append(frame["confidence"].fillna(np.inf).to_numpy(np.float64))
    if not keys:
        return frame
    # lexsort's last key is the primary one.
    return frame.iloc[np.lexsort(keys[::-1])]
