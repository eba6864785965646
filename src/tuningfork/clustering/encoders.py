"""Steps around the encoders of the clustering: the polar step and its measure.

The encoders themselves follow the one contract of
:mod:`tuningfork.models.encoder` (:func:`tuningfork.models.load_encoder`).
:class:`PolarStep` is the polar-coordinate extension applied before
encoding; :func:`rotation_consistency` measures how much it buys.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ImageShapeError
from ..models import Encoder


@dataclass(frozen=True)
class PolarStep:
    """Polar resampling with an extended angle axis, applied before encoding.

    In polar coordinates around the centre, a rotation of the galaxy is a
    cyclic shift along the angle axis; repeating the first ``extension`` of
    the turn after 2 pi lets the convolutions see across the seam, so a
    translation-tolerant encoder becomes rotation-tolerant.

    Parameters
    ----------
    n_radii : int
        Radial samples (rows).
    n_angles : int
        Angular samples over a full turn (columns before the extension).
    extension : float
        Fraction of the turn repeated after 2 pi.
    """

    n_radii: int = 32
    n_angles: int = 64
    extension: float = 0.5

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Resample (n, bands, H, W) images to (n, bands, n_radii, columns)."""
        from ..preprocessing import to_polar

        return to_polar(images, self.n_radii, self.n_angles, extension=self.extension)


def cosine_similarity_rows(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Cosine similarity of corresponding rows of two (n, dim) matrices."""
    a = np.asarray(first, dtype=np.float64)
    b = np.asarray(second, dtype=np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(axis=1) / np.maximum(norms, np.finfo(np.float64).tiny)


def rotation_consistency(
    encoder: Encoder,
    images: np.ndarray,
    *,
    polar: PolarStep | None = None,
    angles_deg: tuple[float, ...] = (45.0, 90.0, 135.0, 180.0, 270.0),
    standardise: bool = False,
) -> dict[str, float]:
    """Mean cosine similarity between embeddings of galaxies and of rotated copies.

    Embeddings are centred on the mean embedding of the unrotated galaxies
    first: features of every image share a large common component (all
    ReLU outputs are positive), which would otherwise push every similarity
    close to 1 and hide what rotation changes.

    Parameters
    ----------
    encoder : Encoder
        The encoder to test (its input band count must match ``images``).
    images : ndarray
        (n, bands, H, W) preprocessed, centred galaxies; n >= 2.
    polar : PolarStep, optional
        Apply the polar step to originals and rotated copies before encoding.
    angles_deg : tuple of float
        Rotation angles, in degrees counter-clockwise.
    standardise : bool
        Also divide every feature by its spread among the unrotated
        galaxies, so that features with large units (a descriptor in
        pixels next to ratios) do not dominate the similarity.

    Returns
    -------
    dict
        ``mean`` over all angles and galaxies, and ``angle_<deg>`` per angle.
    """
    from scipy.ndimage import rotate

    array = np.asarray(images, dtype=np.float32)
    if array.ndim != 4 or array.shape[0] < 2:
        raise ImageShapeError(
            "rotation_consistency", f"expected (n >= 2, bands, H, W), got shape {array.shape}"
        )
    prepare = polar if polar is not None else (lambda batch: batch)
    reference = encoder.encode(prepare(array))
    centre = reference.mean(axis=0)
    spread = reference.std(axis=0) if standardise else np.ones_like(centre)
    spread = np.where(spread > 0, spread, 1.0)
    scores = {}
    for angle in angles_deg:
        # The galaxy sits at the stamp centre, where rotate() turns about.
        rotated = rotate(array, angle, axes=(-1, -2), reshape=False, order=1, mode="nearest")
        similarity = cosine_similarity_rows(
            (reference - centre) / spread, (encoder.encode(prepare(rotated)) - centre) / spread
        )
        scores[f"angle_{angle:g}"] = float(similarity.mean())
    scores["mean"] = float(np.mean([scores[f"angle_{a:g}"] for a in angles_deg]))
    return scores
