"""Feature matrices with their galaxy ids: checks, and Parquet/NPZ files.

A feature file holds one row per galaxy: the ``id`` and one vector (an
encoder's pooled output, or its PCA projection).  Parquet stores the vector
as a fixed-size list column named ``features``; NPZ stores the arrays
``ids`` and ``features``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..errors import CorruptFileError, FeatureError, MissingFileError, UnsupportedFormatError

FEATURE_SUFFIXES = (".parquet", ".npz")


def check_features(features: np.ndarray, name: str = "features", min_rows: int = 1) -> np.ndarray:
    """Return the features as a float array after checking they can be clustered.

    Parameters
    ----------
    features : array_like
        (n_galaxies, n_features) matrix.
    name : str
        What to call the matrix (a file name) in error messages.
    min_rows : int
        Fewest rows accepted.

    Returns
    -------
    ndarray
        The features as float32 or float64 (a view when no conversion is needed).

    Raises
    ------
    FeatureError
        For a matrix that is not 2-D, has too few rows or holds NaN/inf.
    """
    array = np.asarray(features)
    if array.ndim != 2:
        raise FeatureError(
            f"{name}: expected a 2-D (galaxies, features) matrix, got shape {array.shape}"
        )
    if array.shape[0] < min_rows:
        raise FeatureError(f"{name}: {array.shape[0]} rows, at least {min_rows} needed")
    if not np.issubdtype(array.dtype, np.floating):
        array = array.astype(np.float64)
    finite_rows = np.isfinite(array).all(axis=1)
    if not finite_rows.all():
        bad = np.flatnonzero(~finite_rows)
        raise FeatureError(
            f"{name}: {bad.size} rows hold NaN or inf (first at row {bad[0]}); "
            "drop or re-encode those galaxies"
        )
    return array


def save_features(path: str | Path, ids: Sequence[str], features: np.ndarray) -> Path:
    """Write ids and features atomically to ``.parquet`` or ``.npz``.

    Parameters
    ----------
    path : str or Path
        Output file; the suffix chooses the format.
    ids : sequence of str
        One id per row.
    features : ndarray
        (n_galaxies, n_features) matrix, stored as float32.

    Returns
    -------
    Path
        The written file.
    """
    from ..data.writers import atomic_path

    path = Path(path)
    matrix = np.asarray(features, dtype=np.float32)
    names = np.asarray([str(i) for i in ids])
    if matrix.ndim != 2 or matrix.shape[0] != names.size:
        raise FeatureError(f"{path}: {names.size} ids for a feature matrix of shape {matrix.shape}")
    suffix = path.suffix.lower()
    if suffix not in FEATURE_SUFFIXES:
        raise UnsupportedFormatError(
            path, f"feature file must end in {' or '.join(FEATURE_SUFFIXES)}"
        )
    with atomic_path(path) as tmp:
        if suffix == ".npz":
            with open(tmp, "wb") as handle:
                np.savez(handle, ids=names, features=matrix)
        else:
            import pyarrow as pa
            import pyarrow.parquet as pq

            vectors = pa.FixedSizeListArray.from_arrays(pa.array(matrix.ravel()), matrix.shape[1])
            pq.write_table(pa.table({"id": pa.array(names.tolist()), "features": vectors}), tmp)
    return path


def load_features(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a file written by :func:`save_features`.

    Parameters
    ----------
    path : str or Path
        ``.parquet`` or ``.npz`` feature file.

    Returns
    -------
    ids : ndarray of str
    features : ndarray
        float32 (n_galaxies, n_features).

    Raises
    ------
    MissingFileError, UnsupportedFormatError, CorruptFileError
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(path, "feature file")
    suffix = path.suffix.lower()
    if suffix not in FEATURE_SUFFIXES:
        raise UnsupportedFormatError(
            path, f"feature file must end in {' or '.join(FEATURE_SUFFIXES)}"
        )
    try:
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as stored:
                return stored["ids"].astype(str), stored["features"].astype(np.float32, copy=False)
        import pyarrow.parquet as pq

        table = pq.read_table(path, columns=["id", "features"])
        column = table.column("features").combine_chunks()
        width = column.type.list_size
        features = column.flatten().to_numpy(zero_copy_only=False).reshape(-1, width)
        return np.asarray(table.column("id").to_pylist(), dtype=str), features.astype(
            np.float32, copy=False
        )
    except (KeyError, ValueError, OSError, AttributeError) as error:
        raise CorruptFileError(
            path, f"not a tuningfork feature file ({type(error).__name__}: {error})"
        ) from None
