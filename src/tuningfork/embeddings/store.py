"""Embeddings on disk: a Parquet table of ids and vectors, plus a float32 NPY.

The Parquet file is the record (ids, vectors, and which encoder made them, in
its schema metadata); the NPY beside it holds the same vectors as one
memory-mappable float32 array so that search and outlier detection over
10^5 galaxies do not have to decode Parquet lists.  A fingerprint of ids and
vectors lets an index detect that it was built on other embeddings.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

import numpy as np

from ..errors import CorruptFileError, InputFileError, MissingFileError, UnsupportedFormatError

METADATA_KEY = b"tuningfork.embeddings"
#: Embeddings whose variance between galaxies is below this share of their
#: mean squared length are taken as collapsed: galaxies then differ by less
#: than 0.1 % of the vectors' length, all mapped to (nearly) one point.
COLLAPSE_SPREAD = 1e-6
#: ... or whose first principal component holds more than this share of the
#: variance: the galaxies then differ along a single direction only.  Working
#: AstroPT embeddings of Galaxy Zoo hold 40-66 % there (random weights
#: included), pixel PCA 14 % (benchmarks/results/pretrain_defaults.md).
COLLAPSE_FIRST_COMPONENT = 0.9
#: Rows sampled to measure collapse (pairwise cosines cost n^2).
COLLAPSE_SAMPLE = 1000


class CollapsedEmbeddingsWarning(UserWarning):
    """Embeddings that barely vary between galaxies (see :func:`collapse_report`)."""


@dataclass(frozen=True)
class CollapseReport:
    """How much a set of embeddings varies between galaxies.

    Attributes
    ----------
    mean_cosine : float
        Mean cosine similarity of the raw vectors over pairs of distinct
        galaxies (NaN for fewer than 2).  Reported, not judged: transformer
        embeddings share a large common direction, so working ones reach
        0.999 too.
    spread : float
        Variance between galaxies (summed over dimensions) over the mean
        squared length of the vectors.
    first_component : float
        Share of the variance along the first principal component (NaN when
        the vectors do not vary at all).
    collapsed : bool
        ``spread < COLLAPSE_SPREAD`` or ``first_component >
        COLLAPSE_FIRST_COMPONENT``.
    """

    mean_cosine: float
    spread: float
    first_component: float
    collapsed: bool

    def message(self, source: str | Path = "embeddings") -> str:
        """One line saying what was measured and what it means."""
        # Identical vectors have no principal component to speak of.
        component = ("" if np.isnan(self.first_component)
                     else f", 1st principal component {self.first_component:.1%} of it")
        return (
            f"{source}: embeddings look collapsed: mean pairwise cosine {self.mean_cosine:.4f}, "
            f"variance between galaxies {self.spread:.1e} of their squared length{component}; "
            "results will be meaningless (pretrain longer or check the model)"
        )


def collapse_report(vectors: np.ndarray, sample: int = COLLAPSE_SAMPLE, seed: int = 0) -> CollapseReport:
    """Measure whether embeddings have collapsed onto (nearly) one point or one line.

    A network blind to its input, or whose training diverged, maps every
    galaxy to almost the same vector, or moves them along one direction
    only; search, outliers and clustering then rank galaxies by noise.  Both
    symptoms are measured on the centred vectors: their variance relative to
    the vectors' length (:data:`COLLAPSE_SPREAD`) and the share of it in the
    first principal component (:data:`COLLAPSE_FIRST_COMPONENT`).  The mean
    cosine of the raw vectors is reported too but not judged: AstroPT
    embeddings with random weights reach 0.9992 on Galaxy Zoo and still
    beat pixel PCA in a linear probe (0.672 against 0.648), because their
    variation lies orthogonal to a large common direction.

    Parameters
    ----------
    vectors : ndarray
        (n, dim) embeddings; not modified.
    sample : int
        At most this many rows, drawn at random, are measured.
    seed : int
        Seed of the sample.

    Returns
    -------
    CollapseReport
    """
    vectors = np.asarray(vectors)
    unknown = CollapseReport(float("nan"), float("nan"), float("nan"), False)
    if len(vectors) < 2:
        return unknown
    rows = np.arange(len(vectors))
    if len(rows) > sample:
        rows = np.sort(np.random.default_rng(seed).choice(rows, sample, replace=False))
    x = np.asarray(vectors[rows], dtype=np.float64)
    x = x[np.all(np.isfinite(x), axis=1)]
    if len(x) < 2:
        return unknown
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit = x / np.where(norms > 0, norms, 1.0)
    # The sum of all pairwise cosines is |sum of unit vectors|^2, self-pairs included.
    n = len(unit)
    mean_cosine = float((np.sum(unit.sum(axis=0) ** 2) - np.sum(unit**2)) / (n * (n - 1)))
    variances = np.linalg.svd(x - x.mean(axis=0), compute_uv=False) ** 2
    total = variances.sum()
    squared_length = np.sum(x**2)
    spread = float(total / squared_length) if squared_length > 0 else 0.0
    first = float(variances[0] / total) if total > 0 else float("nan")
    collapsed = spread < COLLAPSE_SPREAD or first > COLLAPSE_FIRST_COMPONENT
    return CollapseReport(mean_cosine, spread, first, collapsed)


def warn_if_collapsed(embeddings: EmbeddingSet) -> CollapseReport:
    """Issue a :class:`CollapsedEmbeddingsWarning` when embeddings look collapsed.

    Parameters
    ----------
    embeddings : EmbeddingSet

    Returns
    -------
    CollapseReport
    """
    report = collapse_report(embeddings.vectors)
    if report.collapsed:
        warnings.warn(
            report.message(embeddings.path or "embeddings"), CollapsedEmbeddingsWarning, stacklevel=3
        )
    return report


def fingerprint(ids: list[str] | np.ndarray, vectors: np.ndarray) -> str:
    """Short hash of ids and vectors that changes when either changes.

    Parameters
    ----------
    ids : sequence of str
        Galaxy ids in row order.
    vectors : ndarray
        (n, dim) embeddings.

    Returns
    -------
    str
        16 hexadecimal characters.
    """
    digest = hashlib.sha256()
    digest.update("\x00".join(str(i) for i in ids).encode())
    digest.update(np.ascontiguousarray(vectors, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def npy_path_for(parquet_path: str | Path) -> Path:
    """The NPY file that accompanies an embeddings Parquet file."""
    return Path(parquet_path).with_suffix(".npy")


@dataclass
class EmbeddingSet:
    """Embeddings of a set of galaxies.

    Parameters
    ----------
    ids : list of str
        Galaxy ids, one per row of ``vectors``.
    vectors : ndarray
        (n, dim) float32 embeddings.
    path : Path, optional
        The Parquet file they were read from (used in error messages).
    metadata : dict
        What made them (encoder name and settings).
    """

    ids: list[str]
    vectors: np.ndarray
    path: Path | None = None
    metadata: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.vectors.ndim != 2 or len(self.ids) != self.vectors.shape[0]:
            raise InputFileError(
                self.path or "embeddings",
                f"{len(self.ids)} ids do not match a vector array of shape {self.vectors.shape}",
            )
        self._row_of = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def dim(self) -> int:
        """Length of one embedding vector."""
        return int(self.vectors.shape[1])

    @property
    def fingerprint(self) -> str:
        """See :func:`fingerprint`."""
        return fingerprint(self.ids, self.vectors)

    def row(self, galaxy_id: str) -> int:
        """Row of a galaxy id; raises a clear error when it is absent."""
        if self._row_of is None:
            self._row_of = {galaxy_id: row for row, galaxy_id in enumerate(self.ids)}
        try:
            return self._row_of[str(galaxy_id)]
        except KeyError:
            raise InputFileError(
                self.path or "embeddings",
                f"no galaxy with id '{galaxy_id}' among its {len(self)} embeddings",
            ) from None


def load_embeddings(path: str | Path) -> EmbeddingSet:
    """Read embeddings written by :func:`tuningfork.embeddings.embed.extract_embeddings`.

    Parameters
    ----------
    path : str or Path
        The ``.parquet`` file (or its ``.npy`` sibling).  The NPY is
        memory-mapped when present; otherwise vectors come from the Parquet.

    Returns
    -------
    EmbeddingSet

    Warns
    -----
    CollapsedEmbeddingsWarning
        When the vectors barely vary between galaxies (:func:`collapse_report`).
    """
    import pyarrow.parquet as pq

    path = Path(path)
    if path.suffix.lower() == ".npy":
        path = path.with_suffix(".parquet")
    if path.suffix.lower() != ".parquet":
        raise UnsupportedFormatError(
            path, "embeddings must be a .parquet file (with its .npy beside it)"
        )
    if not path.is_file():
        raise MissingFileError(path, "embeddings file")
    try:
        schema = pq.read_schema(path)
        ids = [str(i) for i in pq.read_table(path, columns=["id"]).column("id").to_pylist()]
    except Exception as error:  # pyarrow raises several unrelated types for broken files
        raise CorruptFileError(
            path, f"not a readable embeddings Parquet file ({error.__class__.__name__})"
        ) from error
    metadata = json.loads((schema.metadata or {}).get(METADATA_KEY, b"{}"))
    npy = npy_path_for(path)
    if npy.is_file():
        vectors = np.load(npy, mmap_mode="r")
    else:
        column = pq.read_table(path, columns=["embedding"]).column("embedding")
        vectors = np.asarray(column.combine_chunks().flatten(), dtype=np.float32).reshape(
            len(ids), -1
        )
    if vectors.dtype != np.float32 or vectors.ndim != 2 or vectors.shape[0] != len(ids):
        raise CorruptFileError(
            npy, f"holds {vectors.dtype} {vectors.shape} vectors for {len(ids)} ids in {path.name}"
        )
    embeddings = EmbeddingSet(ids=ids, vectors=vectors, path=path, metadata=metadata)
    warn_if_collapsed(embeddings)
    return embeddings


class EmbeddingWriter:
    """Write embeddings batch by batch with bounded memory, atomically.

    The NPY is a memory map of the final size (the number of galaxies is known
    in advance) and the Parquet is written one row group per batch; both go to
    temporary files that replace the targets only when :meth:`close` is
    reached after every row was written.

    Parameters
    ----------
    path : str or Path
        Target ``.parquet`` file; the NPY goes beside it.
    count : int
        Number of galaxies that will be written.
    dim : int
        Embedding length.
    metadata : dict
        Stored in the Parquet schema (encoder name and settings).
    """

    def __init__(self, path: str | Path, count: int, dim: int, metadata: dict):
        import pyarrow as pa

        self.path = Path(path)
        if self.path.suffix.lower() != ".parquet":
            raise UnsupportedFormatError(self.path, "embeddings output must end in .parquet")
        self.count, self.dim, self.metadata = count, dim, dict(metadata)
        self.schema = pa.schema(
            [("id", pa.string()), ("embedding", pa.list_(pa.float32(), dim))],
            metadata={METADATA_KEY: json.dumps(self.metadata).encode()},
        )
        self.written = 0
        self.ids: list[str] = []

    def __enter__(self) -> Self:
        import contextlib

        import pyarrow.parquet as pq

        from ..data.writers import atomic_path

        self._stack = contextlib.ExitStack()
        parquet_tmp = self._stack.enter_context(atomic_path(self.path))
        npy_tmp = self._stack.enter_context(atomic_path(npy_path_for(self.path)))
        self._vectors = np.lib.format.open_memmap(
            npy_tmp, mode="w+", dtype=np.float32, shape=(self.count, self.dim)
        )
        self._parquet_tmp = parquet_tmp
        self._parquet = pq.ParquetWriter(parquet_tmp, self.schema)
        return self

    def write(self, ids: list[str], vectors: np.ndarray) -> None:
        """Append one batch of ids and (batch, dim) vectors."""
        import pyarrow as pa

        vectors = np.asarray(vectors, dtype=np.float32)
        if vectors.shape != (len(ids), self.dim):
            raise InputFileError(
                self.path, f"batch of {len(ids)} ids came with vectors of shape {vectors.shape}"
            )
        if self.written + len(ids) > self.count:
            raise InputFileError(
                self.path, f"more than the announced {self.count} embeddings were written"
            )
        self._vectors[self.written : self.written + len(ids)] = vectors
        flat = pa.array(vectors.reshape(-1), type=pa.float32())
        column = pa.FixedSizeListArray.from_arrays(flat, self.dim)
        self._parquet.write_table(
            pa.table(
                {"id": pa.array([str(i) for i in ids]), "embedding": column}, schema=self.schema
            )
        )
        self.ids.extend(str(i) for i in ids)
        self.written += len(ids)

    def __exit__(self, exc_type, exc, traceback) -> bool:
        self._parquet.close()
        if exc_type is None and self.written != self.count:
            exc = InputFileError(
                self.path, f"only {self.written} of {self.count} embeddings were written"
            )
        self._vectors.flush()
        del self._vectors
        if exc is not None:
            # Unwinding the atomic paths with the error deletes the temporary
            # files and leaves any earlier output untouched.
            self._stack.__exit__(type(exc), exc, None)
            if exc_type is None:
                raise exc
            return False
        self._stack.close()
        return False
