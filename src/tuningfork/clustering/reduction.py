"""PCA of encoder features, in memory or incrementally from a memory-mapped file.

Clustering 768 to 1536 ConvNeXt dimensions directly is slow and dominated
by noise directions; the paper kept the principal components.  When the
features do not fit in memory (a ``.npy`` file of millions of rows), the
projection is learnt batch by batch with scikit-learn's IncrementalPCA and
applied batch by batch as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from ..errors import ConfigError, CorruptFileError, MissingFileError
from .features import check_features
from .stored import NpzFields

# Features above this size are reduced incrementally unless told otherwise.
DEFAULT_MEMORY_LIMIT_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class PCAProjection(NpzFields):
    """A fitted linear projection onto principal components.

    Attributes
    ----------
    mean : ndarray
        (n_features,) mean subtracted before projecting.
    components : ndarray
        (n_components, n_features) orthonormal principal axes.
    explained_variance_ratio : ndarray
        (n_components,) fraction of the total variance along each axis.
    """

    file_kind: ClassVar[str] = "PCA file"
    content: ClassVar[str] = "a PCA projection"

    mean: np.ndarray
    components: np.ndarray
    explained_variance_ratio: np.ndarray

    @property
    def n_components(self) -> int:
        """Number of kept components."""
        return self.components.shape[0]

    def transform(self, features, batch_size: int = 65536, name: str = "features") -> np.ndarray:
        """Project features onto the components, batch by batch.

        Parameters
        ----------
        features : ndarray or str or Path
            (n_galaxies, n_features) matrix, or a ``.npy`` file of one
            (memory-mapped, never fully loaded).
        batch_size : int
            Rows projected at a time.
        name : str
            What to call the features in error messages.

        Returns
        -------
        ndarray
            float32 (n_galaxies, n_components).
        """
        matrix, name = _open_features(features, name)
        if matrix.ndim != 2 or matrix.shape[1] != self.mean.size:
            raise ConfigError(
                f"{name}: shape {matrix.shape} does not match a PCA of {self.mean.size} features"
            )
        out = np.empty((matrix.shape[0], self.n_components), dtype=np.float32)
        for start in range(0, matrix.shape[0], batch_size):
            chunk = check_features(matrix[start : start + batch_size], f"{name} rows from {start}")
            out[start : start + batch_size] = (chunk - self.mean) @ self.components.T
        return out


def _open_features(features, name: str) -> tuple[np.ndarray, str]:
    if isinstance(features, (str, Path)):
        path = Path(features)
        if not path.is_file():
            raise MissingFileError(path, "feature matrix")
        try:
            return np.load(path, mmap_mode="r", allow_pickle=False), str(path)
        except (ValueError, OSError) as error:
            raise CorruptFileError(path, f"not a .npy matrix ({type(error).__name__})") from None
    return np.asarray(features), name


def _check_n_components(n_components: float, n_samples: int, n_features: int, name: str) -> None:
    limit = min(n_samples, n_features)
    if isinstance(n_components, bool):
        raise ConfigError(f"{name}: n_components must be a number, got {n_components!r}")
    if isinstance(n_components, (int, np.integer)):
        if not 1 <= n_components <= limit:
            raise ConfigError(f"{name}: n_components={n_components} must be between 1 and {limit}")
    elif not 0 < float(n_components) <= 1:
        raise ConfigError(
            f"{name}: a variance fraction n_components={n_components} must be in (0, 1]"
        )


def _components_for_fraction(ratios: np.ndarray, fraction: float) -> int:
    cumulative = np.cumsum(ratios)
    return int(min(np.searchsorted(cumulative, fraction - 1e-12) + 1, ratios.size))


def fit_pca(
    features,
    n_components: float = 0.95,
    *,
    incremental: bool | None = None,
    batch_size: int = 4096,
    memory_limit_bytes: int = DEFAULT_MEMORY_LIMIT_BYTES,
    seed: int = 0,
    name: str = "features",
) -> PCAProjection:
    """Fit a PCA that keeps a number of components or a fraction of the variance.

    Parameters
    ----------
    features : ndarray or str or Path
        (n_galaxies, n_features) matrix, or a ``.npy`` file of one, which is
        memory-mapped and read batch by batch.
    n_components : int or float
        Components to keep (int), or the fraction of the total variance
        they must explain (float in (0, 1]).
    incremental : bool, optional
        Use IncrementalPCA.  By default, when the matrix is memory-mapped or
        larger than ``memory_limit_bytes``.
    batch_size : int
        Rows per IncrementalPCA batch; at most this many components can be
        kept incrementally.
    memory_limit_bytes : int
        Size above which the default switches to incremental.
    seed : int
        Seed of the randomised SVD solver.
    name : str
        What to call the features in error messages.

    Returns
    -------
    PCAProjection

    Raises
    ------
    FeatureError
        For features that are not a finite 2-D matrix.
    ConfigError
        For a number of components out of range.
    """
    from sklearn.decomposition import PCA, IncrementalPCA
    from sklearn.utils import gen_batches

    matrix, name = _open_features(features, name)
    if matrix.ndim != 2:
        check_features(matrix, name)
    n_samples, n_features = matrix.shape
    _check_n_components(n_components, n_samples, n_features, name)
    if incremental is None:
        incremental = isinstance(matrix, np.memmap) or matrix.nbytes > memory_limit_bytes
    wants_fraction = not isinstance(n_components, (int, np.integer))

    if not incremental:
        pca = PCA(n_components=n_components, random_state=seed).fit(
            check_features(matrix, name, min_rows=2)
        )
        return PCAProjection(pca.mean_, pca.components_, pca.explained_variance_ratio_)

    fitted = min(n_features, batch_size, n_samples) if wants_fraction else int(n_components)
    if fitted > batch_size:
        raise ConfigError(
            f"{name}: incremental PCA keeps at most batch_size={batch_size} components"
        )
    pca = IncrementalPCA(n_components=fitted)
    for rows in gen_batches(n_samples, batch_size, min_batch_size=fitted):
        pca.partial_fit(check_features(matrix[rows], f"{name} rows from {rows.start}"))
    kept = (
        _components_for_fraction(pca.explained_variance_ratio_, float(n_components))
        if wants_fraction
        else fitted
    )
    return PCAProjection(pca.mean_, pca.components_[:kept], pca.explained_variance_ratio_[:kept])
