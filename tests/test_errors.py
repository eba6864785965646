"""Every error class pickles (crosses process boundaries) and is also a builtin exception."""

from __future__ import annotations

import concurrent.futures
import inspect
import pickle

import pytest

from tuningfork import errors

CLASSES = [
    value for value in vars(errors).values()
    if inspect.isclass(value) and issubclass(value, errors.TuningforkError)
]

#: One instance of each class, built with its own constructor.
EXAMPLES = {
    errors.TuningforkError: errors.TuningforkError("something went wrong"),
    errors.InputFileError: errors.InputFileError("a.fits", "odd"),
    errors.MissingFileError: errors.MissingFileError("a.fits", "image"),
    errors.CorruptFileError: errors.CorruptFileError("a.fits", "truncated"),
    errors.UnsupportedFormatError: errors.UnsupportedFormatError("a.xyz", "unknown format"),
    errors.ImageShapeError: errors.ImageShapeError("a.fits", "4 dimensions"),
    errors.EmptyImageError: errors.EmptyImageError("a.fits", "no finite pixel"),
    errors.MissingWCSError: errors.MissingWCSError("a.fits", "no celestial WCS"),
    errors.NoSourcesError: errors.NoSourcesError("a.fits", "nothing detected"),
    errors.CatalogError: errors.CatalogError("cat.csv: duplicate ids"),
    errors.EmptyCatalogError: errors.EmptyCatalogError("cat.csv"),
    errors.MissingColumnError: errors.MissingColumnError("cat.csv", "label", ["id", "file"]),
    errors.MissingImagesError: errors.MissingImagesError("cat.csv", ["a.fits", "b.fits"]),
    errors.ConfigError: errors.ConfigError("stretch must be one of linear, asinh"),
    errors.ModelError: errors.ModelError("model: wrong architecture"),
    errors.FeatureError: errors.FeatureError("features: NaN"),
    errors.OutputError: errors.OutputError("out/p.parquet", "folder is not writable"),
    errors.OutputExistsError: errors.OutputExistsError("out/p.parquet"),
}

#: The builtin each family refines, so that ``except ValueError`` works for users.
BUILTINS = {
    errors.InputFileError: ValueError,
    errors.MissingFileError: FileNotFoundError,
    errors.CatalogError: ValueError,
    errors.MissingColumnError: KeyError,
    errors.MissingImagesError: FileNotFoundError,
    errors.ConfigError: ValueError,
    errors.ModelError: ValueError,
    errors.FeatureError: ValueError,
    errors.OutputError: OSError,
    errors.OutputExistsError: FileExistsError,
}


def test_every_class_has_an_example():
    assert set(CLASSES) == set(EXAMPLES)


@pytest.mark.parametrize("error", list(EXAMPLES.values()), ids=lambda e: type(e).__name__)
def test_round_trip_through_pickle(error):
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is type(error)
    assert str(copy) == str(error)
    assert copy.__dict__ == error.__dict__
    assert "\n" not in str(error)


@pytest.mark.parametrize("cls, builtin", list(BUILTINS.items()), ids=lambda c: c.__name__)
def test_inherits_the_builtin(cls, builtin):
    assert issubclass(cls, builtin)
    with pytest.raises(builtin):
        raise EXAMPLES[cls]


def test_every_class_but_the_base_is_a_builtin_error_too():
    builtin = (ValueError, LookupError, OSError)
    assert all(issubclass(cls, builtin) for cls in CLASSES if cls is not errors.TuningforkError)


def test_message_is_the_plain_text_for_key_and_os_errors():
    assert str(EXAMPLES[errors.MissingColumnError]) == "cat.csv: no column 'label' (columns: id, file)"
    assert str(EXAMPLES[errors.MissingFileError]) == "a.fits: image not found"


def _raise_in_worker(path: str) -> None:
    raise errors.CorruptFileError(path, "truncated FITS")


def test_an_error_raised_in_another_process_arrives_intact():
    with concurrent.futures.ProcessPoolExecutor(max_workers=1) as pool:
        future = pool.submit(_raise_in_worker, "broken.fits")
        with pytest.raises(errors.CorruptFileError) as caught:
            future.result(timeout=60)
    assert caught.value.path.name == "broken.fits"
    assert caught.value.problem == "truncated FITS"
    assert str(caught.value) == "broken.fits: truncated FITS"
