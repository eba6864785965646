"""Outputs are checked before any work, and an existing result is replaced only when asked."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from astropy.table import Table
from typer.testing import CliRunner

from tuningfork.cli import app
from tuningfork.data.writers import check_output
from tuningfork.errors import OutputError, OutputExistsError

torch.set_num_threads(1)
runner = CliRunner()
#: A one-epoch run on the tiny set below.
TRAIN = ("--image-size", 24, "--crop-pixels", 24, "--epochs", 1, "--batch-size", 7)


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def _one_error_line(result) -> str:
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


@pytest.fixture()
def a_file(tmp_path) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text("not a folder")
    return path


@pytest.fixture()
def read_only(tmp_path, monkeypatch) -> Path:
    """A folder the process may not write to.

    Tests run as root, which ignores permission bits, so ``os.access`` is
    made to say no for this one folder; ``check_output`` must believe it.
    """
    folder = tmp_path / "read-only"
    folder.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: Path(path) != folder and real_access(path, mode, **kw))
    return folder


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:24, :24] - 11.5
    labels = np.array(["compact", "extended"] * 10)
    widths = np.where(labels == "compact", 1.5, 4.0)
    images = np.exp(-np.hypot(x, y)[None] / widths[:, None, None]) + rng.normal(0, 0.02, (20, 24, 24))
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, images=images.astype(np.float32), labels=labels,
             split=np.where(np.arange(20) < 14, "train", "val"))
    return path


@pytest.fixture(scope="module")
def model(tiny_npz, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "model"
    result = invoke("train", tiny_npz, "--out", folder, *TRAIN)
    assert result.exit_code == 0, result.output
    return folder


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- check_output itself


def test_parent_that_is_a_file_is_refused(a_file):
    with pytest.raises(OutputError, match="notes.txt: is a file") as caught:
        check_output(a_file / "deeper" / "p.parquet")
    assert isinstance(caught.value, OSError)


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    target = tmp_path / "p.csv"
    target.write_text("earlier result")
    with pytest.raises(OutputExistsError, match="already exists") as caught:
        check_output(target)
    assert isinstance(caught.value, FileExistsError)
    assert check_output(target, overwrite=True) == target
    assert target.read_text() == "earlier result"


def test_folders_empty_ones_are_free_full_ones_are_results(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    assert check_output(folder, kind="folder") == folder
    (folder / "config.json").write_text("{}")
    with pytest.raises(OutputExistsError):
        check_output(folder, kind="folder")
    with pytest.raises(OutputError, match="is a folder"):
        check_output(folder, overwrite=True)
    with pytest.raises(OutputError, match="is a file"):
        check_output(folder / "config.json", kind="folder", overwrite=True)


def test_missing_parents_are_fine_and_nothing_is_left_behind(tmp_path):
    assert check_output(tmp_path / "a" / "b" / "p.parquet") == tmp_path / "a" / "b" / "p.parquet"
    assert list(tmp_path.iterdir()) == []


def test_read_only_folder_is_refused(read_only):
    with pytest.raises(OutputError, match="not writable"):
        check_output(read_only / "sub" / "p.parquet")


def test_the_probe_catches_what_os_access_misses(tmp_path, monkeypatch):
    # A read-only mount, or root on a folder it may not write: os.access says
    # yes, and only creating a file tells.
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    with pytest.raises(OutputError, match="not writable .Permission denied."):
        check_output(tmp_path / "p.parquet")


# -- commands: one line, exit 2, before any work


@pytest.mark.parametrize("command", [
    ["predict", "no-such-model", "no-such-data.csv", "--out"],
    ["train", "no-such-data.csv", "--out"],
    ["morphometry", "no-such-data.csv", "--out"],
])
@pytest.mark.parametrize("place", ["under_a_file", "read_only"])
def test_unwritable_output_fails_first_in_one_line(command, place, a_file, request):
    # The model and the data do not exist: an error about the output proves it
    # was checked before anything was read.
    parent = a_file if place == "under_a_file" else request.getfixturevalue("read_only")
    line = _one_error_line(invoke(*command, parent / "out" / "p.parquet"))
    assert str(parent) in line and "no-such" not in line


def test_predict_refuses_an_existing_catalog_then_replaces_it(model, tiny_npz, tmp_path):
    out = tmp_path / "predictions.parquet"
    out.write_text("earlier result")
    line = _one_error_line(invoke("predict", model, tiny_npz, "--out", out))
    assert "predictions.parquet: already exists" in line and "--overwrite" in line
    assert out.read_text() == "earlier result"
    result = invoke("predict", model, tiny_npz, "--out", out, "--overwrite")
    assert result.exit_code == 0, result.output
    assert len(Table.read(out)) == 20


def test_train_refuses_an_existing_model_folder_then_replaces_it(model, tiny_npz):
    before = _digest(model / "weights.safetensors")
    line = _one_error_line(invoke("train", tiny_npz, "--out", model, *TRAIN))
    assert f"{model}: already exists" in line
    assert _digest(model / "weights.safetensors") == before
    result = invoke("train", tiny_npz, "--out", model, *TRAIN, "--seed", 5, "--overwrite")
    assert result.exit_code == 0, result.output
    assert _digest(model / "weights.safetensors") != before


def test_failed_overwrite_keeps_the_earlier_result(model, tiny_npz, tmp_path):
    out = tmp_path / "predictions.csv"
    assert invoke("predict", model, tiny_npz, "--out", out).exit_code == 0
    before = out.read_bytes()
    # Labels the model never saw: predict fails after the output check passed.
    labels = np.array(["compact", "spiral"] * 10)
    other = tmp_path / "other.npz"
    np.savez(other, images=np.load(tiny_npz)["images"], labels=labels)
    result = invoke("predict", model, other, "--out", out, "--overwrite")
    assert result.exit_code == 2
    assert out.read_bytes() == before


# -- the Python API is protected too


def test_library_functions_raise_the_error_class(model, tiny_npz, a_file):
    from tuningfork.morphometry import morphometry_catalog
    from tuningfork.training import evaluate, predict, train

    with pytest.raises(OutputExistsError):
        train(tiny_npz, model, image_size=24, epochs=1)
    with pytest.raises(OutputError):
        predict(model, tiny_npz, a_file / "p.parquet")
    with pytest.raises(OutputError):
        evaluate(model, tiny_npz, a_file)
    with pytest.raises(OutputExistsError):
        morphometry_catalog([np.ones((8, 8), np.float32)], output=a_file)


def test_cluster_resumes_its_own_run_but_refuses_another_folder(tmp_path):
    from tuningfork.clustering.pipeline import check_run_folder

    run = tmp_path / "clusters"
    run.mkdir()
    (run / "groups.csv").write_text("id\n")
    with pytest.raises(OutputExistsError):
        check_run_folder(run)
    (run / "stages.json").write_text("{}")
    assert check_run_folder(run) == run
