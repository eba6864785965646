"""What a generator is conditioned on: a class label or a vector of morphology features.

A :class:`ConditionSpace` is fixed at training time and stored in the model
folder.  It checks every requested condition (an unknown class, a feature
vector of the wrong length), turns conditions into the tensors the network
reads (class indices, or features standardised with the training mean and
spread), and flags feature vectors outside the training range, which is how
the paper's extrapolation to unseen combinations is recorded.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..config import Serialisable
from ..errors import ConfigError, MissingColumnError

CONDITION_KINDS = ("class", "features")
#: Catalog suffixes that ``--condition`` reads as a table of conditions.
CONDITION_CATALOG_SUFFIXES = (".csv", ".parquet", ".fits", ".fit")

Condition = str | Sequence[float] | np.ndarray


@dataclass(frozen=True)
class ConditionSpace(Serialisable):
    """The conditions a generator understands.

    Parameters
    ----------
    kind : {'class', 'features'}
        Class labels, or real-valued feature vectors (Galaxy Zoo vote
        fractions, Sersic index, ellipticity...).
    names : tuple of str
        Class names, or feature names (catalog columns).
    mean, std : tuple of float
        Features only: training mean and standard deviation, used to
        standardise the network's input.
    minimum, maximum : tuple of float
        Features only: training range; values outside it are extrapolation.
    """

    kind: str
    names: tuple[str, ...]
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    minimum: tuple[float, ...] = ()
    maximum: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        # JSON gives lists; the space is frozen and hashable with tuples.
        object.__setattr__(self, "names", tuple(str(name) for name in self.names))
        for key in ("mean", "std", "minimum", "maximum"):
            object.__setattr__(self, key, tuple(float(value) for value in getattr(self, key)))
        if self.kind not in CONDITION_KINDS:
            raise ConfigError(
                f"ConditionSpace: unknown kind '{self.kind}' (choose from {', '.join(CONDITION_KINDS)})"
            )
        if not self.names:
            raise ConfigError(f"ConditionSpace: no {'classes' if self.kind == 'class' else 'features'}")
        if self.kind == "features" and not all(
            len(values) == len(self.names) for values in (self.mean, self.std, self.minimum, self.maximum)
        ):
            raise ConfigError("ConditionSpace: mean, std, minimum and maximum need one value per feature")

    @classmethod
    def from_classes(cls, class_names: Sequence[str]) -> ConditionSpace:
        """Class conditioning on the given classes (their order fixes the indices)."""
        return cls("class", tuple(str(name) for name in class_names))

    @classmethod
    def fit_features(cls, names: Sequence[str], values: np.ndarray) -> ConditionSpace:
        """Feature conditioning, with statistics from the training values.

        Parameters
        ----------
        names : sequence of str
            Feature names.
        values : ndarray
            (n, len(names)) finite training values.

        Returns
        -------
        ConditionSpace
        """
        array = np.asarray(values, dtype=np.float64)
        if array.ndim != 2 or array.shape[1] != len(names) or len(array) == 0:
            raise ConfigError(
                f"ConditionSpace: expected ({len(names)} features) columns of values, got shape {array.shape}"
            )
        std = array.std(axis=0)
        # A constant feature carries no information; unit spread keeps it finite.
        std = np.where(std > 0, std, 1.0)
        return cls(
            "features",
            tuple(str(name) for name in names),
            tuple(map(float, array.mean(axis=0))),
            tuple(map(float, std)),
            tuple(map(float, array.min(axis=0))),
            tuple(map(float, array.max(axis=0))),
        )

    @property
    def size(self) -> int:
        """Number of classes, or length of a feature vector."""
        return len(self.names)

    def check(self, conditions: Sequence[Condition], source: str) -> list[Condition]:
        """Validate requested conditions.

        Parameters
        ----------
        conditions : sequence
            Class names (class kind) or feature vectors (features kind).
        source : str
            The generator, named in error messages.

        Returns
        -------
        list
            Class names as str, or feature vectors as float64 arrays.

        Raises
        ------
        ConfigError
            An unknown class, a feature vector of the wrong length or with
            non-finite values, or no condition at all.
        """
        if len(conditions) == 0:
            raise ConfigError(f"{source}: no condition given")
        checked: list[Condition] = []
        for condition in conditions:
            if self.kind == "class":
                if not isinstance(condition, str) or condition not in self.names:
                    raise ConfigError(
                        f"{source}: unknown condition {condition!r} (classes: {', '.join(self.names)})"
                    )
                checked.append(condition)
                continue
            if isinstance(condition, str):
                raise ConfigError(
                    f"{source}: conditioned on features ({', '.join(self.names)}), got the name {condition!r}"
                )
            vector = np.asarray(condition, dtype=np.float64).ravel()
            if vector.size != self.size:
                raise ConfigError(
                    f"{source}: feature vector has {vector.size} values, expected {self.size} "
                    f"({', '.join(self.names)})"
                )
            if not np.all(np.isfinite(vector)):
                raise ConfigError(f"{source}: feature vector {vector.tolist()} has non-finite values")
            checked.append(vector)
        return checked

    def encode(self, conditions: Sequence[Condition]) -> torch.Tensor:
        """Network input for checked conditions.

        Parameters
        ----------
        conditions : sequence
            As returned by :meth:`check`.

        Returns
        -------
        Tensor
            int64 class indices (n,), or float32 standardised features (n, size).
        """
        if self.kind == "class":
            index = {name: position for position, name in enumerate(self.names)}
            return torch.tensor([index[name] for name in conditions], dtype=torch.int64)
        values = (np.stack(conditions) - np.asarray(self.mean)) / np.asarray(self.std)
        return torch.as_tensor(values, dtype=torch.float32)

    def extrapolated(self, condition: Condition) -> bool:
        """True for a feature vector outside the training range in some feature."""
        if self.kind == "class":
            return False
        vector = np.asarray(condition, dtype=np.float64)
        return bool(np.any(vector < np.asarray(self.minimum)) or np.any(vector > np.asarray(self.maximum)))

    def label(self, condition: Condition) -> str:
        """Short text naming a condition (titles, file names, catalog)."""
        if self.kind == "class":
            return str(condition)
        return "_".join(f"{name}={value:.3g}" for name, value in zip(self.names, np.ravel(condition)))

    def parse(self, text: str, source: str) -> list[Condition]:
        """Read ``--condition`` text: a class name, a comma-separated vector, or a catalog file.

        Parameters
        ----------
        text : str
            A class name; comma-separated feature values; or a CSV, Parquet
            or FITS table with a ``label`` column (classes) or one column per
            feature, one condition per row.
        source : str
            The generator, named in error messages.

        Returns
        -------
        list
            Checked conditions (see :meth:`check`).
        """
        path = Path(text)
        if path.suffix.lower() in CONDITION_CATALOG_SUFFIXES:
            return self.check(self._read_catalog(path), source)
        if self.kind == "class":
            return self.check([text.strip()], source)
        try:
            vector = [float(value) for value in text.split(",") if value.strip()]
        except ValueError:
            raise ConfigError(
                f"{source}: condition '{text}' is neither a catalog nor comma-separated numbers "
                f"({', '.join(self.names)})"
            ) from None
        return self.check([vector], source)

    def _read_catalog(self, path: Path) -> list[Condition]:
        from ..data import read_catalog

        table = read_catalog(path)
        columns = ["label"] if self.kind == "class" else list(self.names)
        for column in columns:
            if column not in table.colnames:
                raise MissingColumnError(path, column, table.colnames)
        if self.kind == "class":
            return [str(value) for value in table["label"]]
        return [np.array([float(row[name]) for name in self.names]) for row in table]
