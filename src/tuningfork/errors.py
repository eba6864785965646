"""The one error hierarchy of tuningfork.

Every error a user can cause (a missing file, a corrupt FITS, an empty
catalog, an unknown architecture) is raised as a subclass of
:class:`TuningforkError`.  The command-line interface catches this base class
once and prints the message as a single line, so messages must be one line,
name the file or object involved, and say what is wrong with it.

Each class also inherits the builtin exception it refines (as GalSim's
``GalSimValueError(GalSimError, ValueError)`` does), so ``except ValueError``
or ``except FileNotFoundError`` in a user's code catches ours too. Every error
pickles with its attributes, so one raised in a Dask worker or a data-loader
process reaches the caller as the same one-line error, not as a crash.
"""

from __future__ import annotations

from pathlib import Path


def _rebuild(cls: type, args: tuple, state: dict) -> TuningforkError:
    # Bypasses __init__, whose signature differs per class: the message is in
    # ``args`` and the attributes (path, column...) in ``state``.
    # OSError subclasses need OSError's own allocator (its instances are larger).
    base = OSError if issubclass(cls, OSError) else Exception
    error = base.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class TuningforkError(Exception):
    """Base class of every error that tuningfork raises on purpose."""

    def __reduce__(self):
        return _rebuild, (type(self), self.args, self.__dict__.copy())

    def __str__(self) -> str:
        # KeyError and OSError format their arguments their own way; ours is
        # always the one-line message.
        return str(self.args[0]) if self.args else ""


class InputFileError(TuningforkError, ValueError):
    """A problem with one input file.

    Parameters
    ----------
    path : str or Path
        The offending file.
    problem : str
        What is wrong with it, as a short phrase.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class MissingFileError(InputFileError, FileNotFoundError):
    """The file does not exist."""

    def __init__(self, path: str | Path, what: str = "file"):
        super().__init__(path, f"{what} not found")


class CorruptFileError(InputFileError):
    """The file exists but cannot be parsed (truncated FITS, broken JPEG...)."""


class UnsupportedFormatError(InputFileError):
    """The file type is not one that tuningfork reads."""


class ImageShapeError(InputFileError):
    """The image has the wrong number of dimensions or an unusable shape."""


class EmptyImageError(InputFileError):
    """The image holds no finite pixel (all NaN or inf)."""


class MissingWCSError(InputFileError):
    """The image has no celestial WCS, so sky positions cannot be placed on it."""


class NoSourcesError(InputFileError):
    """Source detection found nothing in the image."""


class CatalogError(TuningforkError, ValueError):
    """A catalog table is unusable."""


class EmptyCatalogError(CatalogError):
    """The catalog has no rows."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        super().__init__(f"{self.path}: catalog has no rows")


class MissingColumnError(CatalogError, KeyError):
    """A required column is absent from the catalog."""

    def __init__(self, path: str | Path, column: str, available: list[str] | None = None):
        self.path = Path(path)
        self.column = column
        extra = f" (columns: {', '.join(available)})" if available else ""
        super().__init__(f"{self.path}: no column '{column}'{extra}")


class MissingImagesError(CatalogError, FileNotFoundError):
    """Catalog rows point at image files that do not exist.

    All missing files are collected before raising, so the user sees every
    broken row at once rather than one per run.
    """

    def __init__(self, catalog: str | Path, missing: list[str | Path]):
        self.path = Path(catalog)
        self.missing = [Path(m) for m in missing]
        shown = ", ".join(str(m) for m in self.missing[:5])
        more = f" and {len(self.missing) - 5} more" if len(self.missing) > 5 else ""
        super().__init__(
            f"{self.path}: {len(self.missing)} catalog rows point at missing files: "
            f"{shown}{more} (use --skip-missing to leave them out)"
        )


class ConfigError(TuningforkError, ValueError):
    """A configuration value is invalid or inconsistent."""


class ModelError(TuningforkError, ValueError):
    """A model folder is missing, incomplete, or does not match the data."""


class FeatureError(TuningforkError, ValueError):
    """A feature matrix (embeddings, PCA components) is unusable: NaN, wrong shape, too few rows."""


class OutputError(TuningforkError, OSError):
    """An output cannot be written (its folder is read-only, or a file stands where a folder must be).

    Parameters
    ----------
    path : str or Path
        The output, or the folder that stops it.
    problem : str
        What is wrong, as a short phrase.
    """

    def __init__(self, path: str | Path, problem: str):
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class OutputExistsError(OutputError, FileExistsError):
    """The output exists already and replacing it was not asked for."""

    def __init__(self, path: str | Path):
        super().__init__(path, "already exists (pass --overwrite, or overwrite=True, to replace it)")
