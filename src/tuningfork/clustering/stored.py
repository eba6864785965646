"""Saving a fitted transform whose fields are arrays as one ``.npz`` file, no pickle."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from typing import ClassVar, Self

import numpy as np

from ..errors import CorruptFileError, MissingFileError


class NpzFields:
    """Mixin of :meth:`save` and :meth:`load` for a dataclass of arrays and numbers.

    Each dataclass field is one entry of the archive; a number is stored as a
    0-d array and read back as a Python scalar.
    """

    #: Error-message names of the file ("PCA file") and of what it holds ("a PCA projection").
    file_kind: ClassVar[str]
    content: ClassVar[str]

    def save(self, path: str | Path) -> Path:
        """Write the fields atomically to an ``.npz`` file.

        Parameters
        ----------
        path : str or Path
            Output file.

        Returns
        -------
        Path
        """
        from ..data.writers import atomic_path

        arrays = {field.name: np.asarray(getattr(self, field.name)) for field in fields(self)}
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez(handle, **arrays)
        return Path(path)

    @classmethod
    def load(cls, path: str | Path) -> Self:
        """Read an object written by :meth:`save`.

        Parameters
        ----------
        path : str or Path
            ``.npz`` file.

        Returns
        -------
        Self
            An instance of the class it is called on.

        Raises
        ------
        MissingFileError, CorruptFileError
        """
        path = Path(path)
        if not path.is_file():
            raise MissingFileError(path, cls.file_kind)
        try:
            with np.load(path, allow_pickle=False) as stored:
                values = {field.name: stored[field.name] for field in fields(cls)}
        except (KeyError, ValueError, OSError) as error:
            raise CorruptFileError(path, f"not {cls.content} ({type(error).__name__})") from None
        return cls(**{name: value.item() if value.ndim == 0 else value for name, value in values.items()})
