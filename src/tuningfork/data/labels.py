"""Expert labels: an append-only SQLite log, agreement between annotators, and export.

The explorer (:mod:`tuningfork.web`) appends one row per key press; training
(``tuningfork train --labels``) reads the consensus back. Nothing is ever
updated or deleted: an undo is a row of its own that names the row it
cancels, so the log is also the audit trail of who labelled what, when, and
what the model said at that moment.

The database runs in WAL mode with ``synchronous=FULL``: a label is on disk
before :meth:`LabelLog.append` returns, so a server killed at any moment
keeps every label it acknowledged. Each thread gets its own connection
(SQLite connections must not be shared between threads), and writers wait
up to ``timeout_s`` for one another instead of failing.
"""

from __future__ import annotations

import dataclasses
import datetime
import sqlite3
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import CatalogError, ConfigError, CorruptFileError, MissingFileError
from .writers import atomic_path

#: What a row records: a label, a galaxy passed over, or the cancelling of the annotator's last label.
ACTIONS = ("label", "skip", "undo")
#: The label for a galaxy that fits none of the model's classes (an artefact, a star, a blend).
OTHER_LABEL = "other"
#: Seconds a writer waits for another's lock before giving up.
BUSY_TIMEOUT_S = 30.0
EXPORT_FORMATS = ("csv", "parquet")
#: What :meth:`LabelLog.export_table` can export.
EXPORT_KINDS = ("log", "annotators", "consensus")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS labels (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    galaxy_id TEXT NOT NULL,
    label TEXT,
    annotator TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('label', 'skip', 'undo')),
    time TEXT NOT NULL,
    predicted_class TEXT,
    confidence REAL,
    cancels INTEGER REFERENCES labels(seq)
);
CREATE INDEX IF NOT EXISTS labels_annotator ON labels (annotator, seq);
"""
_COLUMNS = ("seq", "galaxy_id", "label", "annotator", "action", "time", "predicted_class",
            "confidence", "cancels")


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")


class LabelLog:
    """The append-only label log of one SQLite file.

    Parameters
    ----------
    path : str or Path
        Database file; created (with its folder) when missing unless
        ``create`` is false.
    create : bool
        Create a missing file; otherwise a missing file raises.
    timeout_s : float
        How long a write waits for another writer's lock.

    Raises
    ------
    MissingFileError
        ``path`` does not exist and ``create`` is false.
    CorruptFileError
        ``path`` is not a label database.
    """

    def __init__(self, path: str | Path, *, create: bool = True, timeout_s: float = BUSY_TIMEOUT_S):
        self.path = Path(path)
        self.timeout_s = float(timeout_s)
        if not self.path.is_file():
            if not create:
                raise MissingFileError(self.path, "label database")
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        try:
            with self._connection() as connection:
                connection.executescript(_SCHEMA)
                columns = [row[1] for row in connection.execute("PRAGMA table_info(labels)")]
        except sqlite3.DatabaseError as error:
            raise CorruptFileError(self.path, f"not a label database ({error})") from None
        if tuple(columns) != _COLUMNS:
            raise CorruptFileError(self.path, f"labels table has columns {columns}, expected {list(_COLUMNS)}")

    def _connection(self) -> sqlite3.Connection:
        """This thread's connection, opened on first use."""
        connection = getattr(self._local, "connection", None)
        if connection is None:
            # isolation_level=None: transactions are begun explicitly, so an
            # undo reads and appends under one write lock.
            connection = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None)
            connection.execute(f"PRAGMA busy_timeout = {int(self.timeout_s * 1000)}")
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = FULL")
            self._local.connection = connection
        return connection

    def close(self) -> None:
        """Close this thread's connection (others close when their threads end)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def append(
        self,
        galaxy_id: str,
        label: str | None,
        annotator: str,
        *,
        action: str = "label",
        predicted_class: str | None = None,
        confidence: float | None = None,
    ) -> dict:
        """Append one label (or skip) and return the stored row.

        Parameters
        ----------
        galaxy_id : str
        label : str or None
            The class; None for a skip.
        annotator : str
        action : {"label", "skip"}
            Undo has its own method, :meth:`undo`.
        predicted_class, confidence : optional
            What the model said about the galaxy when it was labelled.

        Returns
        -------
        dict
            The row, with its ``seq`` (position in the log).

        Raises
        ------
        ConfigError
            An unknown action, or a label action without a label.
        """
        if action not in ("label", "skip"):
            raise ConfigError(f"{self.path}: action must be 'label' or 'skip', got {action!r}")
        if action == "label" and not label:
            raise ConfigError(f"{self.path}: a label action needs a label")
        row = {"galaxy_id": str(galaxy_id), "label": label if action == "label" else None,
               "annotator": str(annotator), "action": action, "time": _now(),
               "predicted_class": predicted_class,
               "confidence": None if confidence is None or not np.isfinite(confidence) else float(confidence),
               "cancels": None}
        return self._insert(row)

    def _insert(self, row: dict) -> dict:
        cursor = self._connection().execute(
            "INSERT INTO labels (galaxy_id, label, annotator, action, time, predicted_class, confidence, cancels) "
            "VALUES (:galaxy_id, :label, :annotator, :action, :time, :predicted_class, :confidence, :cancels)",
            row)
        return {"seq": cursor.lastrowid, **row}

    def undo(self, annotator: str) -> dict | None:
        """Cancel the annotator's last label still in effect by appending an undo row.

        Skips are not undone (they change no label). Repeated undos walk
        back through the annotator's labels, newest first.

        Parameters
        ----------
        annotator : str

        Returns
        -------
        dict or None
            The undo row (its ``cancels`` is the ``seq`` of the cancelled
            label, its ``galaxy_id`` and ``label`` that row's), or None when
            the annotator has no label left to cancel.
        """
        connection = self._connection()
        # BEGIN IMMEDIATE takes the write lock before the read, so two undos
        # of one annotator cannot cancel the same label.
        connection.execute("BEGIN IMMEDIATE")
        try:
            last = connection.execute(
                "SELECT seq, galaxy_id, label FROM labels WHERE annotator = ? AND action = 'label' "
                "AND seq NOT IN (SELECT cancels FROM labels WHERE action = 'undo' AND annotator = ?) "
                "ORDER BY seq DESC LIMIT 1", (annotator, annotator)).fetchone()
            row = None
            if last is not None:
                row = self._insert({"galaxy_id": last[1], "label": last[2], "annotator": str(annotator),
                                    "action": "undo", "time": _now(), "predicted_class": None,
                                    "confidence": None, "cancels": last[0]})
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        return row

    def rows(self):
        """The whole log, oldest first.

        Returns
        -------
        pandas.DataFrame
            One row per appended row, columns as in the database.
        """
        import pandas as pd

        cursor = self._connection().execute(f"SELECT {', '.join(_COLUMNS)} FROM labels ORDER BY seq")
        frame = pd.DataFrame(cursor.fetchall(), columns=list(_COLUMNS))
        return frame.astype({"seq": "int64", "confidence": "float64", "cancels": "Int64"})

    def current(self, annotators: Sequence[str] | None = None):
        """Each annotator's label in effect for each galaxy they labelled.

        A galaxy labelled twice by one annotator keeps the later label;
        cancelled labels do not count.

        Parameters
        ----------
        annotators : sequence of str, optional
            Only these annotators.

        Returns
        -------
        pandas.DataFrame
            ``galaxy_id``, ``annotator``, ``label``, ``time``,
            ``predicted_class``, ``confidence``, ``seq``; sorted by ``seq``.
        """
        return current_labels(self.rows(), annotators)

    def consensus(self, annotators: Sequence[str] | None = None):
        """The majority label of each galaxy (see :func:`consensus_labels`)."""
        return consensus_labels(self.current(annotators))

    def agreement(self, annotators: Sequence[str] | None = None) -> dict:
        """Agreement between annotators (see :func:`agreement`)."""
        return agreement(self.current(annotators))

    def export_table(self, kind: str = "consensus", annotators: Sequence[str] | None = None):
        """The log, the per-annotator labels or the consensus as a table.

        Parameters
        ----------
        kind : {"log", "annotators", "consensus"}
        annotators : sequence of str, optional
            Only these annotators (not for ``"log"``, which is always whole).

        Returns
        -------
        pandas.DataFrame
        """
        if kind not in EXPORT_KINDS:
            raise ConfigError(f"unknown label export '{kind}' (choose from {', '.join(EXPORT_KINDS)})")
        if kind == "log":
            return self.rows()
        return self.current(annotators) if kind == "annotators" else self.consensus(annotators)

    def export(self, path: str | Path, kind: str = "consensus", annotators: Sequence[str] | None = None) -> Path:
        """Write :meth:`export_table` to a CSV or Parquet file (by its suffix), atomically.

        Parameters
        ----------
        path : str or Path
            ``.csv`` or ``.parquet``.
        kind : {"log", "annotators", "consensus"}
        annotators : sequence of str, optional

        Returns
        -------
        Path
        """
        path = Path(path)
        suffix = path.suffix.lstrip(".").lower()
        if suffix not in EXPORT_FORMATS:
            raise ConfigError(f"{path}: label exports are .csv or .parquet")
        frame = self.export_table(kind, annotators)
        # pandas rather than astropy: missing values (a skip's label) stay blank or null.
        with atomic_path(path) as tmp:
            if suffix == "csv":
                frame.to_csv(tmp, index=False)
            else:
                frame.to_parquet(tmp, index=False)
        return path


def current_labels(rows, annotators: Sequence[str] | None = None):
    """Reduce a log (:meth:`LabelLog.rows`) to the labels in effect.

    Parameters
    ----------
    rows : pandas.DataFrame
    annotators : sequence of str, optional

    Returns
    -------
    pandas.DataFrame
        See :meth:`LabelLog.current`.
    """
    cancelled = set(rows.loc[rows["action"] == "undo", "cancels"].dropna().astype(int))
    labelled = rows[(rows["action"] == "label") & ~rows["seq"].isin(cancelled)]
    if annotators is not None:
        labelled = labelled[labelled["annotator"].isin(list(annotators))]
    latest = labelled.sort_values("seq").drop_duplicates(["galaxy_id", "annotator"], keep="last")
    columns = ["galaxy_id", "annotator", "label", "time", "predicted_class", "confidence", "seq"]
    return latest[columns].reset_index(drop=True)


def consensus_labels(current):
    """Majority vote over annotators, one row per labelled galaxy.

    Parameters
    ----------
    current : pandas.DataFrame
        From :func:`current_labels`.

    Returns
    -------
    pandas.DataFrame
        ``galaxy_id``; ``label`` (the majority label, or None on a tie:
        such galaxies are not used for training); ``votes`` (annotators
        behind it); ``annotators`` (how many labelled the galaxy);
        ``agreement`` (votes / annotators); ``labels`` (every label given,
        ``annotator=label`` joined by ``;``).
    """
    import pandas as pd

    records = []
    for galaxy_id, group in current.groupby("galaxy_id", sort=False):
        counts = Counter(group["label"]).most_common()
        top = counts[0][1]
        tied = len(counts) > 1 and counts[1][1] == top
        records.append({
            "galaxy_id": galaxy_id, "label": None if tied else counts[0][0], "votes": top,
            "annotators": len(group), "agreement": top / len(group),
            "labels": ";".join(f"{who}={label}" for who, label in zip(group["annotator"], group["label"])),
        })
    columns = ["galaxy_id", "label", "votes", "annotators", "agreement", "labels"]
    return pd.DataFrame(records, columns=columns)


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of a (galaxies, categories) table of label counts.

    Galaxies may have different numbers of raters (at least 2 each): each
    galaxy's agreement is ``(sum n_ij^2 - n_i) / (n_i (n_i - 1))``, and the
    chance agreement comes from the pooled category shares.

    Parameters
    ----------
    counts : ndarray
        Non-negative integers; row ``i`` counts the raters who put galaxy
        ``i`` in each category.

    Returns
    -------
    float
        NaN when chance agreement is 1 (every rater used one category).
    """
    counts = np.asarray(counts, dtype=np.float64)
    raters = counts.sum(axis=1)
    if counts.ndim != 2 or len(counts) == 0 or (raters < 2).any():
        raise ConfigError("Fleiss' kappa needs a (galaxies, categories) table with at least 2 raters per galaxy")
    observed = ((counts**2).sum(axis=1) - raters) / (raters * (raters - 1))
    shares = counts.sum(axis=0) / raters.sum()
    chance = float((shares**2).sum())
    if chance >= 1.0:
        return float("nan")
    return float((observed.mean() - chance) / (1.0 - chance))


def agreement(current) -> dict:
    """How far annotators agree, on the galaxies at least two of them labelled.

    Parameters
    ----------
    current : pandas.DataFrame
        From :func:`current_labels`.

    Returns
    -------
    dict
        ``annotators`` (names), ``galaxies`` (labelled by at least two),
        ``method`` (``"cohen"`` for two annotators, ``"fleiss"`` for more,
        None when fewer than two galaxies are shared), ``kappa`` (NaN when
        undefined) and ``pairs``: Cohen's kappa of every pair of
        annotators with shared galaxies (``{"a", "b", "galaxies", "kappa"}``).
    """
    from sklearn.metrics import cohen_kappa_score

    annotators = sorted(current["annotator"].unique())
    table = current.pivot_table(index="galaxy_id", columns="annotator", values="label", aggfunc="last")
    shared = table[table.notna().sum(axis=1) >= 2]
    pairs = []
    for i, first in enumerate(annotators):
        for second in annotators[i + 1:]:
            both = table[[first, second]].dropna()
            if len(both) >= 2:
                pairs.append({"a": first, "b": second, "galaxies": len(both),
                              "kappa": _finite_or_nan(cohen_kappa_score(both[first], both[second]))})
    result = {"annotators": annotators, "galaxies": len(shared), "method": None, "kappa": float("nan"),
              "pairs": pairs}
    if len(shared) < 2:
        return result
    if len(annotators) == 2:
        result.update(method="cohen", kappa=pairs[0]["kappa"] if pairs else float("nan"))
        return result
    categories = sorted(set(current["label"]))
    counts = np.stack([[(row == category).sum() for category in categories]
                       for _, row in shared.iterrows()])
    result.update(method="fleiss", kappa=fleiss_kappa(counts))
    return result


def _finite_or_nan(value: float) -> float:
    value = float(value)
    return value if np.isfinite(value) else float("nan")


def disagreements(current):
    """Galaxies whose annotators gave different labels, least agreed first.

    Parameters
    ----------
    current : pandas.DataFrame
        From :func:`current_labels`.

    Returns
    -------
    pandas.DataFrame
        The rows of :func:`consensus_labels` with agreement below 1.
    """
    consensus = consensus_labels(current)
    return consensus[consensus["agreement"] < 1].sort_values(["agreement", "galaxy_id"]).reset_index(drop=True)


def apply_expert_labels(
    collection,
    labels: str | Path | LabelLog,
    column: str = "label",
    *,
    annotators: Sequence[str] | None = None,
    exclude: Iterable[str] = (OTHER_LABEL,),
):
    """Replace catalog labels by the experts' consensus wherever there is one.

    Galaxies with a consensus label take it (joined on ``id``); the others
    keep the catalog's label, and those left with none (no label column, or
    a blank value) are left out, so a catalog without labels becomes the
    set of galaxies the experts labelled.

    Parameters
    ----------
    collection : GalaxyCollection
        The galaxies; not modified.
    labels : str, Path or LabelLog
        The label database.
    column : str
        Label column to fill (created when missing).
    annotators : sequence of str, optional
        Only these annotators' labels count.
    exclude : iterable of str
        Consensus labels that leave the galaxy out instead (by default
        ``"other"``: artefacts are not a class to learn); galaxies whose
        annotators tie are left with their catalog label.

    Returns
    -------
    GalaxyCollection
        A subset with its own catalog; ``class_names`` are the distinct
        labels left.

    Raises
    ------
    CatalogError
        No galaxy is left with a label.
    """
    from astropy.table import MaskedColumn

    log = labels if isinstance(labels, LabelLog) else LabelLog(labels, create=False)
    consensus = log.consensus(annotators)
    expert = {galaxy_id: label for galaxy_id, label in zip(consensus["galaxy_id"], consensus["label"])
              if isinstance(label, str)}
    excluded = set(exclude)
    catalog = collection.catalog
    if column in catalog.colnames:
        original = catalog[column]
        mask = np.ma.getmaskarray(original)
        values = [None if masked else str(value) for value, masked in zip(original.tolist(), mask)]
    else:
        values = [None] * len(collection)
    merged = [expert.get(galaxy_id, value) for galaxy_id, value in zip(collection.ids, values)]
    keep = np.array([value not in (None, "") and value not in excluded for value in merged], dtype=bool)
    if not keep.any():
        raise CatalogError(f"{collection.name}: no galaxy has a label after applying {log.path} "
                           f"({len(expert)} expert labels, none of them matching an id)")
    labelled = collection.subset(np.flatnonzero(keep))
    kept = [value for value, flag in zip(merged, keep) if flag]
    labelled.catalog[column] = MaskedColumn(kept, mask=np.zeros(len(kept), dtype=bool))
    labelled.class_names = sorted(set(kept))
    if labelled.schema.label_column != column:
        labelled.schema = dataclasses.replace(labelled.schema, label_column=column)
    return labelled
