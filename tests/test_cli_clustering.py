"""The clustering commands end to end: cluster, denoise train|apply, morphometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.table import Table
from typer.testing import CliRunner

from tuningfork.cli import app
from tuningfork.simulation import simulate, write_sample

torch.set_num_threads(1)
runner = CliRunner()


def invoke(*args):
    result = runner.invoke(app, [str(arg) for arg in args])
    return result, result.output + (result.stderr if result.stderr_bytes is not None else "")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli_clustering")
    sample = simulate(
        24, size=32, snr=(40.0, 200.0), classes=("elliptical", "edge_on"), seed=4, workers=1
    )
    return write_sample(sample, root / "sims", formats=("fits",))


def test_cluster_resumes_and_scores_against_labels(catalog, tmp_path):
    arguments = [
        "cluster",
        catalog,
        "--out",
        tmp_path / "run",
        "--k",
        2,
        "--bootstrap",
        1,
        "--models",
        "kmeans,gmm",
        "--encoder",
        "autoencoder",
        "--denoise",
        "--no-polar",
        "--denoise-epochs",
        1,
        "--size",
        16,
        "--pca",
        3,
        "--embedding-map",
        "pca",
        "--label-column",
        "label",
    ]
    result, output = invoke(*arguments)
    assert result.exit_code == 0, output
    assert "of 24 galaxies classified into 2 groups" in output
    assert "kmeans_raw_pixels: fraction_classified 1.000" in output
    groups = Table.read(tmp_path / "run" / "groups.csv")
    assert len(groups) == 24
    result, output = invoke(*arguments)
    assert result.exit_code == 0 and "encode: reused from an earlier run" in output


def test_cluster_errors_are_one_line(catalog, tmp_path):
    result, output = invoke(
        "cluster",
        catalog,
        "--out",
        tmp_path / "run",
        "--k",
        99,
        "--encoder",
        "autoencoder",
        "--denoise",
        "--no-polar",
    )
    assert result.exit_code == 2
    assert "error:" in output and "K=99 groups requested but the sample has only 24" in output
    assert "Traceback" not in output
    result, output = invoke(
        "cluster", catalog, "--out", tmp_path / "run", "--k", 2, "--encoder", tmp_path
    )
    assert result.exit_code == 2 and "config.json: model config not found" in output


def test_denoise_train_then_apply(catalog, tmp_path):
    result, output = invoke(
        "denoise",
        "train",
        catalog,
        "--out",
        tmp_path / "ae",
        "--epochs",
        1,
        "--size",
        16,
        "--channels",
        4,
        "--depth",
        2,
    )
    assert result.exit_code == 0, output
    assert (tmp_path / "ae" / "weights.safetensors").is_file()
    result, output = invoke(
        "denoise", "apply", tmp_path / "ae", catalog, "--out", tmp_path / "clean.npz"
    )
    assert result.exit_code == 0, output
    with np.load(tmp_path / "clean.npz") as stored:
        assert stored["images"].shape == (24, 1, 16, 16) and stored["ids"].size == 24
    result, output = invoke("denoise", "apply", tmp_path / "nothing", catalog)
    assert result.exit_code == 2 and "model folder not found" in output


def test_morphometry_command(tmp_path):
    sample = simulate(4, size=32, snr=(100.0, 200.0), classes=("elliptical",), seed=5, workers=1)
    catalog = write_sample(sample, tmp_path / "sims", formats=("fits",))
    result, output = invoke("morphometry", catalog, "--out", tmp_path / "morph.csv")
    assert result.exit_code == 0, output
    assert "measured 4 of 4 galaxies" in output
    table = Table.read(tmp_path / "morph.csv")
    assert len(table) == 4 and {"gini", "m20", "concentration", "asymmetry", "flag"} <= set(
        table.colnames
    )
    assert np.isfinite(table["gini"]).all()
    result, output = invoke("morphometry", tmp_path / "missing.csv")
    assert result.exit_code == 2 and "missing.csv" in output
