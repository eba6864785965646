"""``tuningfork train``, ``predict`` and ``evaluate`` end to end on a tiny data set."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from astropy.table import Table
from typer.testing import CliRunner

from cli_helpers import save_tiny_rotinv
from tuningfork.cli import app

torch.set_num_threads(1)
runner = CliRunner()


@pytest.fixture(scope="module")
def tiny_npz(tmp_path_factory):
    """An NPZ stack of 40 galaxies: bright-centred blobs ("compact") and wide ones ("extended")."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:24, :24] - 11.5
    radius = np.hypot(x, y)
    labels = np.array(["compact", "extended"] * 20)
    widths = np.where(labels == "compact", 1.5, 5.0)
    images = np.exp(-radius[None] / widths[:, None, None]) + rng.normal(0, 0.02, (40, 24, 24))
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    np.savez(path, images=images.astype(np.float32), labels=labels,
             split=np.where(np.arange(40) < 30, "train", "val"))
    return path


def test_train_predict_evaluate(tiny_npz, tmp_path):
    model = tmp_path / "model"
    result = runner.invoke(app, ["train", str(tiny_npz), "--out", str(model), "--image-size", "24",
                                 "--epochs", "2", "--batch-size", "10", "--seed", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((model / "config.json").read_text())["target"]["class_names"] == ["compact", "extended"]

    predictions = tmp_path / "predictions.parquet"
    result = runner.invoke(app, ["predict", str(model), str(tiny_npz), "--out", str(predictions),
                                 "--min-confidence", "0.7"])
    assert result.exit_code == 0, result.output
    table = Table.read(predictions)
    assert len(table) == 40 and set(table["triage"]) <= {"confident", "expert"}
    assert "queued for experts" in result.output

    result = runner.invoke(app, ["evaluate", str(model), str(tiny_npz), "--out", str(tmp_path / "eval"),
                                 "--split", "val"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["n"] == 10
    assert (tmp_path / "eval" / "confusion_matrix.png").is_file()

    # Fine-tune the model on the same data, then predict with ONNX Runtime.
    tuned = tmp_path / "tuned"
    result = runner.invoke(app, ["train", str(tiny_npz), "--out", str(tuned), "--image-size", "24", "--epochs", "1",
                                 "--batch-size", "10", "--init-from", str(model)])
    assert result.exit_code == 0, result.output
    assert json.loads((tuned / "config.json").read_text())["metrics"]["initialised_from"] == str(model)
    result = runner.invoke(app, ["predict", str(tuned), str(tiny_npz), "--out", str(tmp_path / "onnx.parquet"),
                                 "--engine", "onnx"])
    assert result.exit_code == 0, result.output
    assert len(Table.read(tmp_path / "onnx.parquet")) == 40


def _error_line(result) -> str:
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 2 and len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def test_unknown_architecture_is_one_line(tiny_npz, tmp_path):
    result = runner.invoke(app, ["train", str(tiny_npz), "--out", str(tmp_path / "m"), "--architecture", "nope"])
    assert "unknown architecture 'nope'" in _error_line(result)


def test_missing_label_column_is_one_line(tiny_npz, tmp_path):
    result = runner.invoke(app, ["train", str(tiny_npz), "--out", str(tmp_path / "m"), "--target", "morphology"])
    line = _error_line(result)
    assert "tiny.npz" in line and "morphology" in line


def test_corrupt_weights_file_is_one_line(tiny_npz, tmp_path):
    weights = tmp_path / "pretrained.safetensors"
    weights.write_bytes(b"\x00" * 64)
    result = runner.invoke(app, ["train", str(tiny_npz), "--out", str(tmp_path / "m"),
                                 "--architecture", "resnet10t", "--weights", str(weights)])
    assert "pretrained.safetensors" in _error_line(result)


def test_predict_with_classes_the_model_lacks_is_one_line(tiny_npz, tmp_path):
    save_tiny_rotinv(tmp_path / "other", ["compact", "spiral"])
    result = runner.invoke(app, ["predict", str(tmp_path / "other"), str(tiny_npz), "--out",
                                 str(tmp_path / "p.parquet")])
    assert "extended" in _error_line(result)
    assert not (tmp_path / "p.parquet").exists()


def test_export_gives_an_older_folder_the_graph_that_predict_runs_without_torch(tmp_path):
    from tuningfork.models import open_model
    from tuningfork.models.export import stored_graph

    folder = save_tiny_rotinv(tmp_path / "old", ["compact", "extended"])
    assert stored_graph(open_model(folder)) is None
    result = runner.invoke(app, ["export", str(folder)])
    assert result.exit_code == 0, result.output
    assert stored_graph(open_model(folder)) == folder / "network.onnx"
    result = runner.invoke(app, ["export", str(tmp_path / "absent")])
    assert result.exit_code != 0 and "absent" in result.output
