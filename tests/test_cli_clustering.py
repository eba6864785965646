"""The clustering commands end to end: cluster, denoise train|apply, morphometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from astropy.table import Table

from cli_helpers import invoke, write_simulated
from tuningfork.cli import app
from tuningfork.simulation import simulate, write_sample

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    sims = tmp_path_factory.mktemp("cli_clustering") / "sims"
    return write_simulated(sims, 24, snr=(40.0, 200.0), classes=("elliptical", "edge_on"), seed=4)[0]


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


FAST_CLUSTERING = [
    "--k",
    2,
    "--bootstrap",
    1,
    "--models",
    "kmeans,gmm",
    "--size",
    16,
    "--pca",
    3,
    "--embedding-map",
    "pca",
]


def test_cluster_fits_on_one_data_set_and_assigns_another(catalog, tmp_path):
    sample = simulate(
        8, size=32, snr=(40.0, 200.0), classes=("elliptical", "edge_on"), seed=9, workers=1
    )
    other = write_sample(sample, tmp_path / "other", formats=("fits",))
    result, output = invoke(
        "cluster",
        other,
        "--out",
        tmp_path / "run",
        "--fit-on",
        catalog,
        "--label-column",
        "label",
        *FAST_CLUSTERING,
    )
    assert result.exit_code == 0, output
    assert "of 8 galaxies classified into the groups of" in output
    assert "voting: fraction_classified" in output and "kmeans_raw_pixels" not in output
    assert len(Table.read(tmp_path / "run" / "fit" / "groups.csv")) == 24
    assigned = Table.read(tmp_path / "run" / "groups.csv")
    assert len(assigned) == 8

    # The fitted clustering of a run assigns without refitting, to the same groups.
    result, output = invoke(
        "cluster",
        other,
        "--out",
        tmp_path / "again",
        "--model",
        tmp_path / "run" / "fit" / "clustering",
    )
    assert result.exit_code == 0, output
    assert "assign: done" in output and "vote" not in output
    again = Table.read(tmp_path / "again" / "groups.csv")
    np.testing.assert_array_equal(again["vote_fraction"], assigned["vote_fraction"])
    np.testing.assert_array_equal(again["classified"], assigned["classified"])


def test_cluster_fit_on_and_model_options_are_checked(catalog, tmp_path):
    result, output = invoke("cluster", "--help")
    assert result.exit_code == 0 and "--fit-on" in output and "--model" in output
    result, output = invoke(
        "cluster", catalog, "--out", tmp_path / "run", "--model", tmp_path, "--fit-on", catalog
    )
    assert result.exit_code == 2 and "not both" in output
    result, output = invoke("cluster", catalog, "--out", tmp_path / "run", "--model", tmp_path)
    assert result.exit_code == 2 and "fitted clustering settings not found" in output


def test_cluster_option_defaults_are_the_library_defaults():
    import typer.main

    from tuningfork.clustering import ClusterConfig

    command = typer.main.get_command(app).commands["cluster"]
    defaults = {param.name: param.default for param in command.params}
    library = ClusterConfig()
    assert defaults["k"] == library.n_clusters and defaults["bootstrap"] == library.n_bootstrap
    assert defaults["models"] == ",".join(library.models) and defaults["encoder"] == library.encoder
    assert defaults["pca"] == library.pca_components
    for option in (
        "threshold",
        "input_size",
        "denoise",
        "denoise_epochs",
        "polar",
        "workers",
        "seed",
    ):
        assert defaults[option] == getattr(library, option), option
