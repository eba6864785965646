"""Tests of tuningfork.clustering.pipeline: the cached, resumable clustering run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from tuningfork.clustering import autoencoder, pipeline
from tuningfork.clustering.pipeline import ClusterConfig, run_cluster_pipeline
from tuningfork.data import GalaxyCollection
from tuningfork.errors import ConfigError, FeatureError, MissingFileError
from tuningfork.simulation import simulate

torch.set_num_threads(1)
ALL_STAGES = ["denoise", "encode", "pca", "vote", "evaluate", "plots"]


@pytest.fixture(scope="module")
def collection():
    sample = simulate(
        36, size=32, snr=(40.0, 200.0), seed=2, workers=1, classes=["elliptical", "edge_on"]
    )
    return GalaxyCollection.from_arrays(sample.images, sample.catalog)


@pytest.fixture()
def fast_config():
    return ClusterConfig(
        n_clusters=2,
        n_bootstrap=2,
        models=("kmeans", "gmm"),
        encoder="autoencoder",
        denoise=True,
        polar=False,
        denoise_epochs=1,
        denoise_channels=4,
        denoise_depth=2,
        preprocess={"output_size": 32},
        pca_components=4,
        label_column="label",
        embedding_map="pca",
    )


def test_run_writes_every_stage_and_a_rerun_skips_them(
    collection, fast_config, tmp_path, monkeypatch
):
    first = run_cluster_pipeline(collection, tmp_path, fast_config)
    assert first.ran == ALL_STAGES and first.skipped == []
    assert set(first.seconds) == set(ALL_STAGES) and all(t >= 0 for t in first.seconds.values())
    assert set(first.cpu_seconds) == set(ALL_STAGES) and first.cpu_seconds["denoise"] > 0
    assert len(first.groups) == 36 and set(first.groups.colnames) >= {
        "id",
        "group",
        "vote_fraction",
        "second_group",
    }
    assert set(first.scores) == {"voting", "kmeans_features", "kmeans_raw_pixels"}
    assert 0 <= first.scores["voting"]["fraction_classified"] <= 1
    for name in (
        "features.parquet",
        "pca.npz",
        "reduced.parquet",
        "groups.csv",
        "scores.json",
        "plots/groups.png",
        "plots/embedding.png",
        "denoiser/weights.safetensors",
    ):
        assert (tmp_path / name).is_file(), name

    def no_encoding(*args, **kwargs):
        raise AssertionError("a finished stage was recomputed")

    monkeypatch.setattr(pipeline, "_encode", no_encoding)
    monkeypatch.setattr(autoencoder, "train_autoencoder", no_encoding)
    again = run_cluster_pipeline(collection, tmp_path, fast_config)
    assert again.ran == [] and again.skipped == ALL_STAGES
    assert list(again.groups["id"]) == list(first.groups["id"])
    assert again.scores == first.scores


def test_changing_k_reruns_only_the_vote_and_what_follows(collection, fast_config, tmp_path):
    run_cluster_pipeline(collection, tmp_path, fast_config)
    features_time = (tmp_path / "features.parquet").stat().st_mtime_ns
    changed = run_cluster_pipeline(
        collection, tmp_path, dataclasses.replace(fast_config, n_clusters=3)
    )
    assert changed.ran == ["vote", "evaluate", "plots"]
    assert (tmp_path / "features.parquet").stat().st_mtime_ns == features_time
    assert json.loads((tmp_path / "stages.json").read_text()).keys() == set(ALL_STAGES)


def test_a_deleted_output_is_recomputed(collection, fast_config, tmp_path):
    run_cluster_pipeline(collection, tmp_path, fast_config)
    (tmp_path / "groups.csv").unlink()
    assert run_cluster_pipeline(collection, tmp_path, fast_config).ran == ["vote"]


def test_convnext_with_denoising_and_polar_step(collection, fast_config, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "convnext_atto.safetensors"
    save_file(timm.create_model("convnext_atto", pretrained=False).state_dict(), str(weights))
    config = dataclasses.replace(
        fast_config,
        n_bootstrap=1,
        models=("kmeans", "ward"),
        encoder="convnext_atto",
        encoder_weights=str(weights),
        input_size=32,
        polar=True,
        polar_radii=16,
        polar_angles=32,
        pca_components=0.9,
        label_column=None,
    )
    result = run_cluster_pipeline(collection, tmp_path / "run", config)
    assert result.ran == ["denoise", "encode", "pca", "vote", "plots"]
    assert result.scores is None
    assert np.isin(np.asarray(result.groups["group"].filled(-1)), [-1, 0, 1]).all()


def test_default_morphology_encoder_groups_by_shape(tmp_path):
    from tuningfork.clustering.features import load_features

    sample = simulate(
        48,
        size=48,
        snr=(60.0, 300.0),
        seed=11,
        workers=1,
        classes=("elliptical", "edge_on", "merger"),
    )
    three_classes = GalaxyCollection.from_arrays(sample.images, sample.catalog)
    config = ClusterConfig(
        n_clusters=3,
        n_bootstrap=2,
        preprocess={"output_size": 48},
        label_column="label",
        embedding_map="pca",
    )
    assert config.encoder == "morphology" and config.polar and not config.denoise
    result = run_cluster_pipeline(three_classes, tmp_path, config)
    assert result.ran == ["encode", "pca", "vote", "evaluate", "plots"]
    raw_purity = result.scores["kmeans_raw_pixels"]["purity"]
    for method in ("voting", "kmeans_features"):
        assert result.scores[method]["purity"] > max(0.8, raw_purity + 0.2), method
    _, features = load_features(result.files["features"])
    np.testing.assert_allclose(features.std(axis=0), 1.0, atol=1e-3)
    without_polar = run_cluster_pipeline(
        three_classes, tmp_path, dataclasses.replace(config, polar=False)
    )
    assert without_polar.ran[0] == "encode"
    assert load_features(result.files["features"])[1].shape[1] < features.shape[1]


def test_k_larger_than_the_sample_is_a_clear_error(collection, fast_config, tmp_path):
    with pytest.raises(ConfigError, match="K=50 groups requested but the sample has only 36"):
        run_cluster_pipeline(collection, tmp_path, dataclasses.replace(fast_config, n_clusters=50))
    assert not (tmp_path / "features.parquet").exists()


def test_encoder_folder_that_is_not_a_model_is_a_clear_error(collection, tmp_path):
    folder = tmp_path / "my_images"
    folder.mkdir()
    config = ClusterConfig(
        n_clusters=2,
        encoder=str(folder),
        denoise=False,
        polar=False,
        preprocess={"output_size": 32},
    )
    with pytest.raises(MissingFileError, match="my_images/config.json: model config not found"):
        run_cluster_pipeline(collection, tmp_path / "run", config)


def test_nan_features_are_a_clear_error(collection, fast_config, tmp_path, monkeypatch):
    monkeypatch.setattr(
        pipeline, "_encode", lambda collection, *args: (np.full((len(collection), 4), np.nan), None)
    )
    with pytest.raises(FeatureError, match="features.parquet: 36 rows hold NaN"):
        run_cluster_pipeline(collection, tmp_path, fast_config)


def test_inconsistent_settings_are_rejected():
    with pytest.raises(ConfigError, match="needs denoise=True"):
        ClusterConfig(encoder="autoencoder", denoise=False, polar=False)
    with pytest.raises(ConfigError, match="set polar=False"):
        ClusterConfig(encoder="autoencoder", denoise=True)
    with pytest.raises(ConfigError, match="snr_trend_degree must be 0 or more"):
        ClusterConfig(snr_trend_degree=-1)
    with pytest.raises(ConfigError, match="unknown key.*n_groups"):
        ClusterConfig.from_dict({"n_groups": 3})
    config = ClusterConfig(n_clusters=5, sweep_k=(3, 4))
    assert ClusterConfig.from_dict(config.to_dict()) == config


def test_a_model_folder_encodes_with_its_own_preprocessing(collection, tmp_path):
    from tuningfork.clustering.features import load_features
    from tuningfork.models import DenoisingAutoencoder, autoencoder_model_config, save_model

    torch.manual_seed(0)
    autoencoder = DenoisingAutoencoder(1, 4, 2)
    folder = save_model(
        tmp_path / "ae",
        autoencoder,
        autoencoder_model_config(autoencoder, image_size=16, preprocess={"output_size": 16}),
    )
    config = ClusterConfig(
        n_clusters=2,
        n_bootstrap=1,
        models=("kmeans",),
        encoder=str(folder),
        denoise=False,
        polar=False,
        pca_components=3,
        embedding_map="pca",
    )
    result = run_cluster_pipeline(collection, tmp_path / "run", config)
    _, features = load_features(result.files["features"])
    assert features.shape == (36, 16)
    with pytest.raises(ConfigError, match="ae: a model-folder encoder was trained on Cartesian"):
        run_cluster_pipeline(collection, tmp_path / "run3", dataclasses.replace(config, polar=True))
    mismatch = dataclasses.replace(config, preprocess={"output_size": 32})
    with pytest.raises(ConfigError, match="ae: the encoder was trained with other preprocessing"):
        run_cluster_pipeline(collection, tmp_path / "run2", mismatch)


def test_galaxies_without_labels_are_clustered_but_not_scored(collection, fast_config, tmp_path):
    from astropy.table import Table

    labels = [str(value) for value in collection.catalog["label"]]
    labels[:10] = [""] * 10
    partly = GalaxyCollection.from_arrays(
        np.stack([galaxy.image for galaxy in collection]),
        Table({"id": collection.ids, "label": labels}),
    )
    result = run_cluster_pipeline(partly, tmp_path, fast_config)
    assert len(result.groups) == 36
    assert result.scores["voting"]["n_labelled"] == 26
    assert result.scores["kmeans_features"]["fraction_classified"] == 1.0


def test_the_fitted_clustering_assigns_other_galaxies(collection, fast_config, tmp_path):
    from tuningfork.clustering.pipeline import FittedClustering, assign_groups

    fitted_on, assigned = collection.subset(np.arange(24)), collection.subset(np.arange(24, 36))
    run = run_cluster_pipeline(fitted_on, tmp_path / "fit", fast_config)
    folder = tmp_path / "fit" / "clustering"
    loaded = FittedClustering.load(folder)
    assert loaded.config == fast_config and loaded.denoiser == folder / "denoiser"
    result = assign_groups(assigned, folder, tmp_path / "assign", label_column="label")
    assert result.ran == ["encode", "assign", "evaluate", "plots"]
    assert list(result.groups["id"]) == list(assigned.ids)
    assert set(result.scores) == {"voting"} and result.scores["voting"]["n_labelled"] == 12
    # Assigning the fitted galaxies again repeats the fitted run's vote.
    again = assign_groups(fitted_on, folder, tmp_path / "again")
    for column in ("classified", "vote_fraction", "second_fraction"):
        np.testing.assert_allclose(
            np.asarray(again.groups[column], float), np.asarray(run.groups[column], float)
        )
    rerun = assign_groups(assigned, folder, tmp_path / "assign", label_column="label")
    assert rerun.ran == [] and rerun.skipped == ["encode", "assign", "evaluate", "plots"]
    with pytest.raises(MissingFileError, match="fitted clustering settings not found"):
        assign_groups(assigned, tmp_path, tmp_path / "nothing")


def test_a_few_fitted_galaxies_assigned_again_get_their_fitted_vote(collection, tmp_path):
    from tuningfork.clustering.pipeline import assign_groups

    config = ClusterConfig(
        n_clusters=2,
        n_bootstrap=2,
        models=("kmeans", "gmm"),
        preprocess={"output_size": 32},
        pca_components=3,
        embedding_map="pca",
    )
    run = run_cluster_pipeline(collection, tmp_path / "fit", config)
    assert (tmp_path / "fit" / "clustering" / "snr_trend.npz").is_file()
    # Five galaxies could not fit an S/N trend of their own: the stored one is used.
    few = assign_groups(
        collection.subset(np.arange(5)), tmp_path / "fit" / "clustering", tmp_path / "few"
    )
    for column in ("classified", "vote_fraction"):
        np.testing.assert_array_equal(few.groups[column], run.groups[column][:5])
