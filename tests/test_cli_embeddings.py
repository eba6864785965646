"""The embedding commands end to end: pretrain, embed, similar, outliers, probe."""

import numpy as np
import pytest
from astropy.table import Table

from cli_helpers import invoke, write_simulated
from tuningfork.simulation import simulate, write_sample


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """A small simulated data set, a tiny pretrained model and its embeddings."""
    root = tmp_path_factory.mktemp("cli_embeddings")
    catalog, sample = write_simulated(
        root / "sims", 60, bands=("g", "r"), classes=("elliptical", "spiral", "star"), seed=2
    )
    result, output = invoke(
        "pretrain",
        catalog,
        "--out",
        root / "model",
        "--image-size",
        16,
        "--patch-size",
        4,
        "--epochs",
        1,
        "--batch-size",
        16,
        "--accelerator",
        "cpu",
    )
    assert result.exit_code == 0, output
    result, output = invoke(
        "embed",
        catalog,
        "--encoder",
        root / "model",
        "--out",
        root / "emb.parquet",
        "--batch-size",
        25,
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, output
    return root, catalog, sample


def test_embed_writes_every_galaxy(workspace):
    root, _, sample = workspace
    table = Table.read(root / "emb.parquet")
    assert len(table) == len(sample) and (root / "emb.npy").is_file()
    assert (root / "model" / "weights.safetensors").is_file()


def test_similar_by_id_returns_the_galaxy_first_with_a_mosaic(workspace):
    root, _, sample = workspace
    query = str(sample.catalog["id"][5])
    result, output = invoke(
        "similar",
        root / "emb.parquet",
        "--id",
        query,
        "--k",
        4,
        "--out",
        root / "similar.csv",
        "--mosaic",
        root / "similar.png",
    )
    assert result.exit_code == 0, output
    neighbours = Table.read(root / "similar.csv")
    assert str(neighbours["id"][0]) == query and len(neighbours) == 4
    assert (root / "similar.png").stat().st_size > 0
    assert (root / "emb.faiss").is_file()


def test_similar_by_new_image_file(workspace):
    root, catalog, _ = workspace
    image = min((catalog.parent / "images").glob("*.fits"))
    result, output = invoke(
        "similar",
        root / "emb.parquet",
        "--image",
        image,
        "--encoder",
        root / "model",
        "--k",
        3,
        "--out",
        root / "by_image.csv",
        "--mosaic",
        root / "by_image.png",
    )
    assert result.exit_code == 0, output
    assert len(Table.read(root / "by_image.csv")) == 3


def test_outliers_ranks_everything(workspace):
    root, _, sample = workspace
    result, output = invoke(
        "outliers",
        root / "emb.parquet",
        "--out",
        root / "outliers.csv",
        "--mosaic",
        root / "outliers.png",
        "--top",
        9,
        "--neighbors",
        5,
    )
    assert result.exit_code == 0, output
    table = Table.read(root / "outliers.csv")
    assert list(table["rank"]) == list(range(1, len(sample) + 1))
    assert (root / "outliers.png").is_file()


def test_probe_writes_metrics_and_plot(workspace):
    root, catalog, _ = workspace
    result, output = invoke(
        "probe",
        root / "emb.parquet",
        "--catalog",
        catalog,
        "--column",
        "label",
        "--fractions",
        "0.2,1",
        "--repeats",
        1,
        "--out",
        root / "probes.csv",
        "--plot",
        root / "probes.png",
    )
    assert result.exit_code == 0, output
    table = Table.read(root / "probes.csv")
    assert set(table["probe"]) == {"linear", "knn"} and np.all(table["accuracy"] >= 0)
    assert (root / "probes.png").is_file()


def test_errors_are_one_line(workspace, tmp_path):
    root, catalog, _ = workspace
    result, output = invoke("similar", root / "emb.parquet", "--id", "no-such-galaxy")
    assert result.exit_code == 2 and "no galaxy with id 'no-such-galaxy'" in output
    assert "Traceback" not in output
    result, output = invoke("similar", root / "emb.parquet")
    assert result.exit_code == 2 and "exactly one query" in output
    result, output = invoke(
        "probe", root / "emb.parquet", "--catalog", catalog, "--fractions", "half"
    )
    assert result.exit_code == 2 and "label fractions must be comma-separated numbers" in output
    result, output = invoke("embed", catalog, "--encoder", tmp_path / "nothing")
    assert result.exit_code == 2 and "model folder not found" in output


def test_embed_with_the_morphology_encoder(tmp_path):
    from tuningfork.embeddings import load_embeddings
    from tuningfork.models import load_encoder

    sample = simulate(8, size=32, bands=("g", "r"), classes=("elliptical", "spiral"), seed=4, workers=1)
    catalog = write_sample(sample, tmp_path / "sims", formats=("fits",))
    result, output = invoke("embed", catalog, "--encoder", "morphology", "--out", tmp_path / "x.parquet")
    assert result.exit_code == 0, output
    dim = load_encoder("morphology", bands=2).dim
    table = Table.read(tmp_path / "x.parquet")
    assert len(table) == len(sample) and list(table["id"]) == [str(name) for name in sample.catalog["id"]]
    embeddings = load_embeddings(tmp_path / "x.parquet")
    assert embeddings.vectors.shape == (len(sample), dim) and np.isfinite(embeddings.vectors).all()
    assert embeddings.metadata["encoder"] == "morphology" and embeddings.metadata["dim"] == dim
    assert f"wrote {len(sample)} embeddings of dimension {dim}" in output
    result, output = invoke(
        "embed", catalog, "--encoder", "morphology", "--bands", 3, "--out", tmp_path / "y.parquet"
    )
    assert result.exit_code == 2 and "2 bands but the encoder expects 3" in output
    assert "Traceback" not in output


def test_pretrain_stops_at_the_cpu_budget_and_says_so(workspace, tmp_path):
    from tuningfork.models import load_model

    _, catalog, _ = workspace
    result, output = invoke(
        "pretrain", catalog, "--out", tmp_path / "model", "--image-size", 16, "--patch-size", 4,
        "--epochs", 500, "--budget", 0.5, "--batch-size", 16, "--accelerator", "cpu",
    )
    assert result.exit_code == 0, output
    assert "preprocessing: central 50% of each stamp, resized to 16 px" in output
    assert "CPU budget reached after" in output
    metrics = load_model(tmp_path / "model", architecture="astropt").config.metrics
    assert metrics["budget_reached"] and 1 <= metrics["epochs_run"] < 500


def test_pretrain_preprocessing_is_chosen_on_the_command_line(workspace, tmp_path):
    from tuningfork.models import load_model

    _, catalog, _ = workspace
    common = ("--image-size", 16, "--patch-size", 4, "--epochs", 1, "--batch-size", 16, "--accelerator", "cpu")
    result, output = invoke("pretrain", catalog, "--out", tmp_path / "default", *common)
    assert result.exit_code == 0, output
    assert "normalisation none, background kept" in output
    result, output = invoke("pretrain", catalog, "--out", tmp_path / "minmax", *common,
                            "--normalisation", "minmax", "--subtract-background")
    assert result.exit_code == 0, output
    stored = {name: load_model(tmp_path / name, architecture="astropt").config.preprocessing
              for name in ("default", "minmax")}
    # The default is what benchmarks/bench_embeddings.py feeds the model.
    assert (stored["default"]["normalisation"], stored["default"]["subtract_background"]) == ("none", False)
    assert (stored["minmax"]["normalisation"], stored["minmax"]["subtract_background"]) == ("minmax", True)
