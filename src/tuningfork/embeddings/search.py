"""Similarity search over embeddings with faiss.

Small sets are searched exactly (a flat index is both the fastest and the
correct choice below some tens of thousands of vectors); above a threshold an
inverted-file (IVF) or HNSW index trades a little recall for speed.  The
index is saved beside the embeddings with the fingerprint of the embeddings
it was built on, so that using it with other embeddings is an error rather
than silently wrong neighbours.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from astropy.table import Table

from ..data.writers import atomic_path
from ..errors import ConfigError, CorruptFileError, InputFileError, MissingFileError
from .store import EmbeddingSet

INDEX_KINDS = ("auto", "flat", "ivf", "hnsw")
METRICS = ("cosine", "l2")
#: Below this many vectors "auto" builds an exact index.
EXACT_BELOW = 50_000
#: Vectors normalised and added to an index at a time.
_ADD_CHUNK = 100_000


def index_path_for(embeddings_path: str | Path) -> Path:
    """Where the index of an embeddings Parquet file is saved (same folder, same stem)."""
    return Path(embeddings_path).with_suffix(".faiss")


def _sidecar(index_path: Path) -> Path:
    return index_path.with_suffix(index_path.suffix + ".json")


@dataclass
class SearchSettings:
    """How an index was built and is searched.

    Parameters
    ----------
    kind : {"flat", "ivf", "hnsw"}
        Index type.
    metric : {"cosine", "l2"}
        ``cosine`` distances are 1 - cosine similarity; ``l2`` distances are
        Euclidean, in the units of the embeddings.
    nlist : int
        IVF cells (IVF only).
    nprobe : int
        IVF cells visited per query; more is slower and closer to exact.
    hnsw_neighbors : int
        Links per node of the HNSW graph (HNSW only).
    ef_search : int
        HNSW candidate list length per query; more is slower and closer to exact.
    recall_at_10 : float
        Measured recall of an approximate index against exact search (1 for
        an exact index), on a sample of the indexed vectors as queries.
    """

    kind: str = "flat"
    metric: str = "cosine"
    nlist: int = 0
    nprobe: int = 16
    hnsw_neighbors: int = 32
    ef_search: int = 64
    recall_at_10: float = 1.0


class SimilarityIndex:
    """A faiss index over one :class:`EmbeddingSet`.

    Build with :meth:`build`, reopen with :meth:`load`.

    Parameters
    ----------
    index : faiss.Index
        The built index.
    embeddings : EmbeddingSet
        The vectors it was built on (for ids, and query by id).
    settings : SearchSettings
        How it was built.
    """

    def __init__(
        self, index, embeddings: EmbeddingSet, settings: SearchSettings, path: Path | None = None
    ):
        self.index = index
        self.embeddings = embeddings
        self.settings = settings
        self.path = path
        self._apply_search_settings()

    @classmethod
    def build(
        cls,
        embeddings: EmbeddingSet,
        kind: str = "auto",
        metric: str = "cosine",
        exact_below: int = EXACT_BELOW,
        nlist: int | None = None,
        nprobe: int = 16,
        hnsw_neighbors: int = 32,
        ef_search: int = 64,
        recall_queries: int = 200,
        seed: int = 0,
        train_size: int | None = None,
    ) -> SimilarityIndex:
        """Build an index over a set of embeddings.

        Parameters
        ----------
        embeddings : EmbeddingSet
            The vectors to index.
        kind : {"auto", "flat", "ivf", "hnsw"}
            ``auto`` is ``flat`` (exact) below ``exact_below`` vectors and
            ``ivf`` above.
        metric : {"cosine", "l2"}
            Distance; see :class:`SearchSettings`.
        exact_below : int
            Threshold of ``auto``.
        nlist : int, optional
            IVF cells; default about 4 sqrt(n), with at least 39 training
            vectors per cell as faiss recommends.
        nprobe, hnsw_neighbors, ef_search : int
            See :class:`SearchSettings`.
        recall_queries : int
            Stored vectors used as queries to measure the recall of an
            approximate index against exact search (0 to skip).
        seed : int
            Seed of the IVF k-means, of its training sample and of the recall queries.
        train_size : int, optional
            Train an IVF index on a random sample of this many vectors instead
            of all of them (the vectors are then added in chunks, so memory
            stays bounded by the sample however many vectors there are).

        Returns
        -------
        SimilarityIndex
        """
        import faiss

        if kind not in INDEX_KINDS:
            raise ConfigError(
                f"index kind '{kind}' is unknown (choose one of {', '.join(INDEX_KINDS)})"
            )
        if metric not in METRICS:
            raise ConfigError(f"metric '{metric}' is unknown (choose one of {', '.join(METRICS)})")
        count, dim = embeddings.vectors.shape
        if count == 0:
            raise InputFileError(embeddings.path or "embeddings", "holds no vectors to index")
        if kind == "auto":
            kind = "flat" if count < exact_below else "ivf"
        faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
        settings = SearchSettings(
            kind=kind,
            metric=metric,
            nprobe=nprobe,
            hnsw_neighbors=hnsw_neighbors,
            ef_search=ef_search,
        )
        if kind == "flat":
            index = faiss.IndexFlat(dim, faiss_metric)
        elif kind == "hnsw":
            index = faiss.IndexHNSWFlat(dim, hnsw_neighbors, faiss_metric)
        else:
            trained = count if train_size is None else min(count, train_size)
            settings.nlist = int(nlist or max(1, min(int(4 * np.sqrt(count)), trained // 39)))
            quantizer = faiss.IndexFlat(dim, faiss_metric)
            index = faiss.IndexIVFFlat(quantizer, dim, settings.nlist, faiss_metric)
            index.cp.seed = seed
            rows = np.arange(count)
            if trained < count:
                rows = np.sort(np.random.default_rng(seed).choice(count, size=trained, replace=False))
            index.train(_prepared(embeddings.vectors[rows], metric))
        for start in range(0, count, _ADD_CHUNK):
            index.add(_prepared(embeddings.vectors[start : start + _ADD_CHUNK], metric))
        built = cls(index, embeddings, settings)
        if kind != "flat" and recall_queries:
            rows = np.random.default_rng(seed).choice(
                count, size=min(recall_queries, count), replace=False
            )
            exact = cls.build(embeddings, kind="flat", metric=metric)
            settings.recall_at_10 = recall_at_k(
                built, exact, embeddings.vectors[np.sort(rows)], k=10
            )
        return built

    def _apply_search_settings(self) -> None:
        if self.settings.kind == "ivf":
            self.index.nprobe = min(self.settings.nprobe, self.settings.nlist)
        elif self.settings.kind == "hnsw":
            self.index.hnsw.efSearch = self.settings.ef_search

    def _name(self) -> Path | str:
        return self.path or self.embeddings.path or "similarity index"

    def search(self, queries: np.ndarray, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest embeddings of each query vector.

        Parameters
        ----------
        queries : ndarray
            (n_queries, dim) or (dim,) vectors from the same encoder.
        k : int
            Number of neighbours.

        Returns
        -------
        distances : ndarray
            (n_queries, k) float32, ascending; NaN where fewer than k exist.
        rows : ndarray
            (n_queries, k) int64 rows of the embeddings; -1 where fewer than k.
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.float32))
        if queries.shape[1] != self.embeddings.dim:
            raise InputFileError(
                self._name(),
                f"query embeddings have dimension {queries.shape[1]} but the index holds dimension "
                f"{self.embeddings.dim}; embed the query with the encoder that made the index",
            )
        if k < 1:
            raise ConfigError(f"number of neighbours k must be at least 1, got {k}")
        scores, rows = self.index.search(_prepared(queries, self.settings.metric), k)
        if self.settings.metric == "cosine":
            distances = 1.0 - scores
        else:
            distances = np.sqrt(np.clip(scores, 0.0, None))
        distances = np.where(rows < 0, np.nan, distances).astype(np.float32)
        return distances, rows.astype(np.int64)

    def neighbours(self, query: str | np.ndarray, k: int = 10) -> Table:
        """Nearest galaxies of one query, as a table.

        Parameters
        ----------
        query : str or ndarray
            A galaxy id present in the embeddings, or one embedding vector
            (e.g. of a new image).
        k : int
            Number of neighbours; a query by id includes the galaxy itself,
            normally first at distance 0.

        Returns
        -------
        astropy.table.Table
            Columns ``rank`` (1 = nearest), ``id``, ``distance``.
        """
        vector = (
            self.embeddings.vectors[self.embeddings.row(query)] if isinstance(query, str) else query
        )
        distances, rows = self.search(vector, k)
        found = rows[0] >= 0
        return Table(
            {
                "rank": np.arange(1, int(found.sum()) + 1),
                "id": [self.embeddings.ids[r] for r in rows[0][found]],
                "distance": distances[0][found],
            }
        )

    def save(self, path: str | Path | None = None) -> Path:
        """Write the index and its settings atomically.

        Parameters
        ----------
        path : str or Path, optional
            Index file; default :func:`index_path_for` of the embeddings.

        Returns
        -------
        Path
            The index file; its settings and fingerprint are in ``<path>.json``.
        """
        import faiss

        if path is None:
            if self.embeddings.path is None:
                raise ConfigError(
                    "the embeddings were not read from a file: give the index an explicit path"
                )
            path = index_path_for(self.embeddings.path)
        path = Path(path)
        sidecar = {
            **self.settings.__dict__,
            "dim": self.embeddings.dim,
            "count": len(self.embeddings),
            "fingerprint": self.embeddings.fingerprint,
        }
        with atomic_path(path) as tmp:
            faiss.write_index(self.index, str(tmp))
        with atomic_path(_sidecar(path)) as tmp:
            tmp.write_text(json.dumps(sidecar, indent=2))
        self.path = path
        return path

    @classmethod
    def load(cls, embeddings: EmbeddingSet, path: str | Path | None = None) -> SimilarityIndex:
        """Reopen a saved index and check it belongs to these embeddings.

        Parameters
        ----------
        embeddings : EmbeddingSet
            The embeddings the index is meant to serve.
        path : str or Path, optional
            Index file; default :func:`index_path_for` of the embeddings.

        Returns
        -------
        SimilarityIndex

        Raises
        ------
        InputFileError
            When the index was built on other embeddings (different ids,
            vectors or dimension).
        """
        import faiss

        path = Path(path) if path is not None else index_path_for(embeddings.path)
        if not path.is_file() or not _sidecar(path).is_file():
            raise MissingFileError(path, "similarity index")
        try:
            sidecar = json.loads(_sidecar(path).read_text())
            index = faiss.read_index(str(path))
        except (RuntimeError, ValueError) as error:
            raise CorruptFileError(path, f"not a readable faiss index ({error})") from error
        if sidecar.get("dim") != embeddings.dim:
            raise InputFileError(
                path,
                f"index holds dimension {sidecar.get('dim')} "
                f"but the embeddings have dimension {embeddings.dim}",
            )
        if sidecar.get("fingerprint") != embeddings.fingerprint:
            raise InputFileError(
                path,
                f"index was built on other embeddings (fingerprint {sidecar.get('fingerprint')}, "
                f"{embeddings.path or 'these embeddings'} have {embeddings.fingerprint}); "
                "rebuild it (--rebuild)",
            )
        known = {name for name in SearchSettings.__dataclass_fields__}
        settings = SearchSettings(**{key: value for key, value in sidecar.items() if key in known})
        return cls(index, embeddings, settings, path)


def _prepared(vectors: np.ndarray, metric: str) -> np.ndarray:
    """Float32 C-contiguous copy, unit-normalised for cosine (faiss works in place)."""
    prepared = np.array(vectors, dtype=np.float32, order="C", copy=True)
    if metric == "cosine":
        norms = np.linalg.norm(prepared, axis=1, keepdims=True)
        prepared /= np.where(norms > 0, norms, 1.0)
    return prepared


def recall_at_k(
    approximate: SimilarityIndex, exact: SimilarityIndex, queries: np.ndarray, k: int = 10
) -> float:
    """Fraction of the exact k nearest neighbours that an approximate index finds.

    Parameters
    ----------
    approximate, exact : SimilarityIndex
        Indexes over the same embeddings.
    queries : ndarray
        (n_queries, dim) query vectors.
    k : int
        Neighbours compared per query.

    Returns
    -------
    float
        Mean recall in [0, 1].
    """
    _, found = approximate.search(queries, k)
    _, truth = exact.search(queries, k)
    hits = [
        len(set(a[a >= 0]) & set(t[t >= 0])) / max(1, int((t >= 0).sum()))
        for a, t in zip(found, truth)
    ]
    return float(np.mean(hits))


def open_or_build_index(
    embeddings: EmbeddingSet, rebuild: bool = False, **build_options
) -> SimilarityIndex:
    """Reopen the index saved beside the embeddings, or build and save one.

    Parameters
    ----------
    embeddings : EmbeddingSet
        Embeddings read from a file.
    rebuild : bool
        Build a new index even if one is saved (e.g. after re-embedding).
    **build_options
        Passed to :meth:`SimilarityIndex.build` when building.

    Returns
    -------
    SimilarityIndex
        A saved index that matches ``embeddings``; an index saved from other
        embeddings is an error unless ``rebuild`` is set.
    """
    if embeddings.path is None:
        raise ConfigError(
            "the embeddings were not read from a file, so there is nowhere to keep their index"
        )
    if not rebuild and index_path_for(embeddings.path).is_file():
        return SimilarityIndex.load(embeddings)
    index = SimilarityIndex.build(embeddings, **build_options)
    index.save()
    return index
