"""``tuningfork generate train | sample | evaluate`` end to end, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import Table
from typer.testing import CliRunner

from tuningfork.cli import app

runner = CliRunner()
TINY = ("--image-size", 16, "--channels", "8,16", "--attention-levels", 0, "--batch-size", 8,
        "--accelerator", "cpu")


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli-generation")
    result = invoke("simulate", "--out", root / "sim", "--n", 12, "--size", 24, "--bands", "g,r",
                    "--classes", "elliptical,edge_on", "--seed", 1, "--workers", 1, "--formats", "fits")
    assert result.exit_code == 0, result.output
    result = invoke("generate", "train", root / "sim" / "catalog.csv", "--out", root / "generator",
                    "--epochs", 1, *TINY)
    assert result.exit_code == 0, result.output
    assert "trained on 12 galaxies" in result.output
    return root


def test_sample_writes_images_catalog_and_mosaics(generator, tmp_path):
    out = tmp_path / "generated"
    result = invoke("generate", "sample", generator / "generator", "--condition", "edge_on",
                    "--condition", "elliptical", "--n", 2, "--steps", 2, "--seed", 4, "--out", out)
    assert result.exit_code == 0, result.output
    catalog = Table.read(out / "catalog.csv")
    assert list(catalog["label"]) == ["edge_on", "edge_on", "elliptical", "elliptical"]
    assert fits.getdata(out / catalog["file"][0]).shape == (2, 16, 16)
    assert (out / "mosaic_edge_on.png").is_file() and (out / "mosaic_elliptical.png").is_file()


def test_sample_is_reproducible_from_the_command_line(generator, tmp_path):
    for name in ("first", "second"):
        invoke("generate", "sample", generator / "generator", "--condition", "edge_on", "--n", 1,
               "--steps", 2, "--seed", 9, "--out", tmp_path / name, "--formats", "fits")
    np.testing.assert_array_equal(fits.getdata(tmp_path / "first" / "images" / "gen000000.fits"),
                                  fits.getdata(tmp_path / "second" / "images" / "gen000000.fits"))


def test_evaluate_writes_the_per_condition_table(generator, tmp_path):
    out = tmp_path / "evaluation.csv"
    result = invoke("generate", "evaluate", generator / "generator", generator / "sim" / "catalog.csv",
                    "--n", 3, "--steps", 2, "--no-morphometry", "--out", out)
    assert result.exit_code == 0, result.output
    assert set(Table.read(out)["condition"]) == {"edge_on", "elliptical"}


def test_unknown_condition_is_one_error_line(generator, tmp_path):
    result = runner.invoke(app, ["generate", "sample", str(generator / "generator"), "--condition", "spiral",
                                 "--out", str(tmp_path / "x")])
    assert result.exit_code == 2
    assert "unknown condition 'spiral'" in result.output and "Traceback" not in result.output


def test_a_folder_that_is_not_a_generator_is_one_error_line(generator):
    result = runner.invoke(app, ["generate", "sample", str(generator / "sim"), "--condition", "edge_on"])
    assert result.exit_code == 2
    assert "not a generator folder" in result.output


def test_train_adds_generated_galaxies_of_the_rare_classes(generator, tmp_path):
    result = invoke("train", generator / "sim" / "catalog.csv", "--out", tmp_path / "classifier",
                    "--image-size", 32, "--stretch", "asinh", "--epochs", 1, "--batch-size", 8, "--accelerator", "cpu",
                    "--augment-with", generator / "generator", "--rare-classes", "edge_on",
                    "--generated-per-class", 3)
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "classifier" / "config.json").read_text())
    assert config["metrics"]["n_generated"] == 3


def test_train_stops_at_the_cpu_budget_and_says_so(generator, tmp_path):
    from tuningfork.generation import load_generator

    result = invoke("generate", "train", generator / "sim" / "catalog.csv", "--out", tmp_path / "budgeted",
                    "--epochs", 1000, "--budget", 1, *TINY)
    assert result.exit_code == 0, result.output
    assert "CPU budget reached after" in result.output
    metrics = load_generator(tmp_path / "budgeted").metrics
    assert metrics["budget_reached"] and metrics["settings"]["budget_s"] == 1
    assert 1 <= metrics["epochs_run"] < 1000 and metrics["train_cpu_seconds"] >= 1
