"""``tuningfork catalog`` with every stage, the TOML stage config, and the commands that run on Dask."""

from __future__ import annotations

import json

import numpy as np
import pandas
import pytest
import torch
from astropy.io import fits
from astropy.table import Table

from cli_helpers import invoke, save_tiny_rotinv
from test_catalog_pipeline import _error_line, _write_images
from tuningfork.clustering.pipeline import FittedClustering
from tuningfork.data import GalaxyCollection
from tuningfork.embeddings import load_embeddings
from tuningfork.errors import ConfigError
from tuningfork.pipeline import build_catalog, load_pipeline_config, resolve_config
from tuningfork.training import predict

torch.set_num_threads(1)
CLUSTERING = {"n_clusters": 2, "n_bootstrap": 2, "embedding_map": "pca", "polar_radii": 8, "polar_angles": 16,
              "preprocess": {"output_size": 24, "stretch": "asinh"}}


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _write_images(tmp_path_factory.mktemp("data") / "images", 30, seed=7)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return save_tiny_rotinv(tmp_path_factory.mktemp("models") / "model", ["compact", "extended"])


def _clustering_lines(fit_sample: int) -> list[str]:
    """The TOML of a clustering stage fitted on a sample, with the small test settings."""
    lines = ["[clustering]", f"fit_sample = {fit_sample}", "seed = 1", "", "[clustering.options]"]
    return lines + [f"{key} = {json.dumps(value)}" if not isinstance(value, dict) else
                    f"{key} = {{ {', '.join(f'{k} = {json.dumps(v)}' for k, v in value.items())} }}"
                    for key, value in CLUSTERING.items()]


def _write_config(path, model, **extra):
    lines = ["shard_size = 8", "", "[classification]", f'model = "{model}"', "min_confidence = 0.6", ""]
    lines += _clustering_lines(20)
    lines += ["", "[embeddings]", 'encoder = "morphology"', "neighbours = 3", "", "[morphometry]"]
    lines += [f"{key} = {value}" for key, value in extra.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def full_run(images, model, tmp_path_factory):
    """Every stage on a two-worker local cluster, from a TOML config."""
    folder = tmp_path_factory.mktemp("full")
    config = _write_config(folder / "pipeline.toml", model)
    out = folder / "catalog"
    result, output = invoke("catalog", images, "--out", out, "--config", config, "--workers", 2, "--fits")
    assert result.exit_code == 0, output
    return out, output


def test_every_stage_joins_into_one_catalog_keyed_by_id(full_run, images, model):
    out, output = full_run
    catalog = Table.read(out / "catalog.parquet")
    ids = GalaxyCollection.open(images).ids
    assert list(catalog["id"]) == ids
    expected = predict(model, images, min_confidence=0.6)
    assert list(catalog["predicted_class"]) == list(expected["predicted_class"])
    np.testing.assert_allclose(catalog["confidence"], expected["confidence"], rtol=1e-5)
    np.testing.assert_array_equal(catalog["expert_rank"], expected["expert_rank"])
    assert {"group", "group_classified", "group_vote_fraction", "second_group", "second_group_fraction",
            "outlier_score", "neighbour_1", "neighbour_3", "gini", "m20", "concentration", "asymmetry",
            "smoothness", "sersic_n", "rhalf_circ", "flag", "measured", "file"} <= set(catalog.colnames)
    assert "skipped" not in output
    # Neighbours are other galaxies of the catalog.
    neighbours = np.asarray(catalog["neighbour_1"])
    assert set(neighbours) <= set(ids) and not (neighbours == np.asarray(catalog["id"])).any()
    assert np.isfinite(catalog["outlier_score"]).all()
    with fits.open(out / "catalog.fits") as hdus:
        assert hdus[1].header["NAXIS2"] == 30
    frame = pandas.read_parquet(out / "catalog.parquet")
    assert list(frame["id"]) == ids and frame["group"].notna().any()


def test_the_run_records_its_config_versions_and_fingerprint(full_run, images):
    out, _ = full_run
    run = json.loads((out / "config.json").read_text())
    config = run["settings"]["config"]
    assert config["shard_size"] == 8 and config["clustering"]["fit_sample"] == 20
    assert config["embeddings"]["neighbours"] == 3 and config["morphometry"] is not None
    assert {"numpy", "torch", "distributed"} <= set(run["versions"])
    assert run["settings"]["input"]["count"] == 30
    assert "classifier" in run["settings"]["models"]


def test_embeddings_and_their_index_are_written_beside_the_catalog(full_run):
    out, _ = full_run
    embeddings = load_embeddings(out / "embeddings.parquet")
    catalog = Table.read(out / "catalog.parquet")
    assert embeddings.ids == list(catalog["id"])
    assert np.load(out / "embeddings.npy").shape == embeddings.vectors.shape
    assert (out / "embeddings.faiss").is_file()


def test_clustering_is_fitted_on_a_cross_shard_sample_and_assigned_per_shard(full_run, images):
    out, _ = full_run
    fitted_on = [str(name) for name in Table.read(out / "clustering-fit" / "groups.csv")["id"]]
    ids = GalaxyCollection.open(images).ids
    assert len(fitted_on) == 20 and fitted_on != ids[:20]
    # Assigning shard by shard gives the groups that assigning all at once gives.
    whole = FittedClustering.load(out / "clustering-fit" / "clustering").assign(GalaxyCollection.open(images))
    catalog = Table.read(out / "catalog.parquet")
    np.testing.assert_array_equal(np.ma.filled(catalog["group"], -1), whole.group)
    np.testing.assert_allclose(catalog["group_vote_fraction"], whole.vote_fraction)


def test_a_fitted_clustering_folder_and_the_skipped_stages_without_a_config(full_run, images, tmp_path):
    out, _ = full_run
    result, output = invoke("catalog", images, "--out", tmp_path / "c", "--clusterer",
                            out / "clustering-fit" / "clustering", "--workers", 1, "--shard-size", 10)
    assert result.exit_code == 0, output
    assert "skipped classification: no --classifier" in output and "skipped morphometry" in output
    catalog = Table.read(tmp_path / "c" / "catalog.parquet")
    full = Table.read(out / "catalog.parquet")
    np.testing.assert_array_equal(np.ma.filled(catalog["group"], -1), np.ma.filled(full["group"], -1))
    assert "predicted_class" not in catalog.colnames


def test_an_unreadable_galaxy_in_the_clustering_sample_is_left_to_the_failures(tmp_path):
    folder = _write_images(tmp_path / "images", 12, seed=9)
    (folder / "g005.fits").write_bytes(b"not a FITS file" * 10)
    config = tmp_path / "pipeline.toml"
    config.write_text("\n".join(["shard_size = 4", "", *_clustering_lines(12)]) + "\n")
    result = build_catalog(folder, tmp_path / "catalog", config=config, workers=1)
    fitted_on = [str(name) for name in Table.read(tmp_path / "catalog" / "clustering-fit" / "groups.csv")["id"]]
    assert len(fitted_on) == 11 and "g005" not in fitted_on
    assert result.rows == 11 and list(result.failures["id"]) == ["g005"]


def test_unknown_stage_or_key_in_the_config_is_a_one_line_error(images, model, tmp_path):
    config = tmp_path / "pipeline.toml"
    config.write_text('[classification]\nmodel = "m"\n\n[segmentation]\nsize = 3\n')
    line = _error_line(invoke("catalog", images, "--out", tmp_path / "c", "--config", config)[0])
    assert "pipeline.toml" in line and "'segmentation'" in line and "clustering" in line
    config.write_text("[embeddings]\nencoderr = 'morphology'\n")
    with pytest.raises(ConfigError, match="encoderr.*known: encoder"):
        load_pipeline_config(config)
    config.write_text("[embeddings\n")
    assert "not valid TOML" in _error_line(invoke("catalog", images, "--out", tmp_path / "c", "--config", config)[0])


def test_nothing_to_compute_is_refused():
    with pytest.raises(ConfigError, match="nothing to compute"):
        resolve_config()


def test_the_shipped_example_config_parses():
    from pathlib import Path

    config = load_pipeline_config(Path(__file__).parents[1] / "examples" / "pipeline.toml")
    assert config.stages() == ["classification", "clustering", "embeddings"]


def test_predict_embed_and_morphometry_on_two_workers_equal_one_process(images, model, tmp_path):
    # The median confidence, so that both the catalog and its expert queue have rows.
    threshold = float(np.median(predict(model, images)["confidence"]))
    for workers in (None, 2):
        tag = "dask" if workers else "local"
        extra = ("--workers", workers) if workers else ()
        for command in (("predict", model, images, "--out", tmp_path / f"p-{tag}.parquet", "--min-confidence", threshold),
                        ("embed", images, "--encoder", "morphology", "--out", tmp_path / f"e-{tag}.parquet"),
                        ("morphometry", images, "--out", tmp_path / f"m-{tag}.parquet")):
            result, output = invoke(*command, *extra)
            assert result.exit_code == 0, output
    for name in ("p-{}", "m-{}", "p-{}_expert_queue"):
        local = Table.read(tmp_path / f"{name.format('local')}.parquet")
        dask = Table.read(tmp_path / f"{name.format('dask')}.parquet")
        assert local.colnames == dask.colnames and len(local) == len(dask) > 0
        for column in local.colnames:
            if local[column].dtype.kind == "f":
                np.testing.assert_allclose(dask[column], local[column], rtol=1e-5, equal_nan=True)
            else:
                assert list(dask[column]) == list(local[column])
    local, dask = load_embeddings(tmp_path / "e-local.parquet"), load_embeddings(tmp_path / "e-dask.parquet")
    assert local.ids == dask.ids and local.metadata == dask.metadata
    np.testing.assert_allclose(dask.vectors, local.vectors, rtol=1e-5, atol=1e-6)
    # The working folders are removed once the outputs are written.
    assert not list(tmp_path.glob("*.shards"))


def test_a_vote_model_puts_its_vote_fractions_in_the_catalog(images, tmp_path):
    from tuningfork.models import ModelConfig, create_model, save_model
    from tuningfork.training.trees import get_tree

    tree = get_tree("gz2")
    outputs = len(tree.answers)
    network = create_model("rotinv", outputs, in_channels=1, image_size=24, widths=(8, 16), view_features=8,
                           hidden=8)
    config = ModelConfig(architecture="rotinv", num_outputs=outputs, in_channels=1, image_size=24,
                         preprocessing={"output_size": 24},
                         target={"kind": "votes", "tree": "gz2", "loss": "dirichlet"},
                         architecture_options={"widths": [8, 16], "view_features": 8, "hidden": 8})
    folder = save_model(tmp_path / "votes", network, config)
    result = build_catalog(images, tmp_path / "c", folder, shard_size=16, workers=1)
    expected = predict(folder, images)
    # The vote fractions under the training catalog's column names, as predict writes them.
    fractions = list(tree.fraction_columns)
    assert len(fractions) == outputs and set(fractions) <= set(result.catalog.colnames)
    for name in fractions:
        np.testing.assert_allclose(result.catalog[name], expected[name], rtol=1e-5)


def test_a_killed_run_with_embeddings_resumes_with_each_id_and_vector_once(images, model, tmp_path):
    from tuningfork.pipeline import build_manifest, part_path, vectors_path

    out = tmp_path / "catalog"
    first = build_catalog(images, out, model, encoder="morphology", shard_size=7, workers=2)
    shards = build_manifest(GalaxyCollection.open(images), 7).shards
    vectors = np.load(out / "embeddings.npy")
    # Killed after writing some shards' vectors but before their parts, and before the merge.
    for shard in shards[::2]:
        part_path(out, shard.shard_id).unlink()
    vectors_path(out, shards[-1].shard_id).unlink()  # the last shard had not reached its vectors
    for name in ("catalog.parquet", "embeddings.parquet", "embeddings.npy"):
        (out / name).unlink()
    result = build_catalog(images, out, model, encoder="morphology", shard_size=7, workers=2)
    assert result.shards_run == len(shards[::2]) and result.shards_skipped == len(shards) - len(shards[::2])
    ids = GalaxyCollection.open(images).ids
    assert list(result.catalog["id"]) == ids
    embeddings = load_embeddings(out / "embeddings.parquet")
    assert embeddings.ids == ids
    np.testing.assert_allclose(embeddings.vectors, vectors, rtol=1e-6)
    assert list(first.catalog["neighbour_1"]) == list(result.catalog["neighbour_1"])
