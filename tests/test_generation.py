"""Conditional diffusion generator: training, sampling, inverse preprocessing, errors."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from astropy.io import fits

from tuningfork.data import GalaxyCollection
from tuningfork.errors import ConfigError, FeatureError, MissingFileError, ModelError
from tuningfork.generation import (
    ConditionalUNet,
    ConditionSpace,
    DiffusionScaling,
    Generator,
    UNetConfig,
    diffusion_loss,
    evaluate_generator,
    frechet_distance,
    generate,
    inverse_stretch,
    load_generator,
    morphometry_ks,
    noise_schedule,
    real_in_data_units,
    sample_model_space,
    train_generator,
    write_generated,
)
from tuningfork.generation.augment import generate_for_classifier, to_classifier_input
from tuningfork.models import Encoder, ModelConfig
from tuningfork.preprocessing import PreprocessConfig, Preprocessor, stretch
from tuningfork.simulation import simulate

TINY_UNET = {"channels": (8, 16), "layers_per_block": 1, "attention_levels": 0, "norm_groups": 4}
TINY_PREPROCESS = PreprocessConfig(output_size=16, stretch="asinh", normalisation="none")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="module")
def simulated():
    sample = simulate(16, size=24, bands=("g", "r"), classes=("elliptical", "edge_on"), snr=(50.0, 200.0),
                      seed=0, workers=1)
    return GalaxyCollection.from_arrays(sample.images, sample.catalog)


@pytest.fixture(scope="module")
def class_generator(simulated, tmp_path_factory):
    folder = tmp_path_factory.mktemp("generator")
    train_generator(simulated, folder, preprocess=TINY_PREPROCESS, unet=TINY_UNET, max_epochs=12,
                    batch_size=8, learning_rate=3e-3, accelerator="cpu", seed=0)
    return folder


def untrained_feature_generator() -> Generator:
    space = ConditionSpace.fit_features(["q", "size"], np.array([[0.2, 1.0], [0.9, 3.0]]))
    model = ConditionalUNet(UNetConfig(image_size=16, bands=2, **TINY_UNET), space)
    scaling = DiffusionScaling(TINY_PREPROCESS, (0.0, 0.0), (1.0, 1.0), (-1.5, -1.5), (1.5, 1.5))
    schedule = dict(noise_schedule(100, clip_range=1.5).config)
    return Generator(model.eval(), scaling, schedule, name="feature-generator")


def test_training_loss_decreases_on_fixed_batch(class_generator):
    metrics = load_generator(class_generator).metrics
    assert metrics["fixed_batch_loss_after"] < 0.9 * metrics["fixed_batch_loss_before"]
    assert len(metrics["loss_per_epoch"]) == 12


def test_diffusion_loss_is_reproducible_with_a_generator():
    model = ConditionalUNet(UNetConfig(image_size=16, bands=1, **TINY_UNET), ConditionSpace.from_classes(["a"]))
    images, condition = torch.zeros(4, 1, 16, 16), torch.zeros(4, dtype=torch.int64)
    losses = [float(diffusion_loss(model, noise_schedule(50), images, condition,
                                   generator=torch.Generator().manual_seed(1))) for _ in range(2)]
    assert losses[0] == losses[1]


def test_sampling_is_deterministic_for_a_seed(class_generator):
    generator = load_generator(class_generator)
    first = generate(generator, ["edge_on"], n=2, steps=3, seed=7)
    again = generate(generator, ["edge_on"], n=2, steps=3, seed=7)
    other = generate(generator, ["edge_on"], n=2, steps=3, seed=8)
    np.testing.assert_array_equal(first.images, again.images)
    assert not np.allclose(first.images, other.images)


@pytest.mark.parametrize("sampler", ["ddim", "dpm-solver"])
def test_classifier_free_guidance_changes_the_output(class_generator, sampler):
    generator = load_generator(class_generator)
    unguided = generate(generator, ["elliptical"], n=2, steps=3, seed=1, guidance=0.0, sampler=sampler)
    guided = generate(generator, ["elliptical"], n=2, steps=3, seed=1, guidance=4.0, sampler=sampler)
    assert np.abs(guided.images - unguided.images).max() > 1e-3


def test_samples_come_back_in_data_units_and_shape(class_generator):
    generator = load_generator(class_generator)
    conditions = ["elliptical"] * 3 + ["edge_on"] * 3
    sample = generate(generator, ["elliptical", "edge_on"], n=3, steps=2, seed=0)
    assert sample.images.shape == (6, 2, 16, 16) and sample.images.dtype == np.float32
    assert list(sample.catalog["label"]) == conditions
    model_space = sample_model_space(generator, conditions, steps=2, seed=0)
    scaling = generator.scaling
    assert np.all(model_space >= np.array(scaling.model_min)[:, None, None])
    assert np.all(model_space <= np.array(scaling.model_max)[:, None, None])
    # Data units stretch and scale back to exactly the model-space samples.
    restretched = stretch(sample.images, "asinh", q=TINY_PREPROCESS.asinh_q, softening=TINY_PREPROCESS.stretch_softening)
    np.testing.assert_allclose(scaling.to_model(restretched), model_space, rtol=1e-3, atol=2e-3)


@pytest.mark.parametrize("kind", ["linear", "asinh", "sqrt", "log"])
def test_inverse_stretch_undoes_every_stretch(kind):
    image = np.random.default_rng(0).normal(0, 30, (3, 8, 8)).astype(np.float32)
    original = image.copy()
    restored = inverse_stretch(stretch(image, kind, q=8.0, softening=2.0), kind, q=8.0, softening=2.0)
    np.testing.assert_allclose(restored, image, rtol=1e-3, atol=1e-3)
    np.testing.assert_array_equal(image, original)


def test_preprocessing_round_trip_returns_data_units(simulated):
    raw = np.stack([galaxy.image for galaxy in simulated])
    stretched = Preprocessor(TINY_PREPROCESS).batch(raw)
    scaling = DiffusionScaling.fit(stretched, TINY_PREPROCESS)
    model_space = scaling.to_model(stretched)
    assert model_space.shape == (16, 2, 16, 16)
    assert np.percentile(model_space, 99.9) == pytest.approx(1.0, abs=0.05)
    # Data units: the background-subtracted, resized pixels before the stretch.
    linear = Preprocessor(PreprocessConfig(output_size=16, stretch="linear", normalisation="none")).batch(raw)
    np.testing.assert_allclose(scaling.to_data(model_space), linear, rtol=1e-3, atol=1e-3)


def test_per_image_normalisation_is_refused(simulated, tmp_path):
    with pytest.raises(ConfigError, match="normalisation must be 'none'"):
        train_generator(simulated, tmp_path / "g", preprocess=PreprocessConfig(output_size=16))


def test_written_samples_open_as_a_collection(class_generator, tmp_path):
    sample = generate(class_generator, ["edge_on", "elliptical"], n=2, steps=2, seed=0)
    catalog = write_generated(sample, tmp_path / "out")
    collection = GalaxyCollection.open(catalog)
    assert collection.class_names == ["edge_on", "elliptical"] and len(collection) == 4
    np.testing.assert_allclose(fits.getdata(tmp_path / "out" / "images" / "gen000000.fits"), sample.images[0])
    assert (tmp_path / "out" / "images" / "gen000003.png").is_file()
    assert {p.name for p in (tmp_path / "out").glob("mosaic_*.png")} == {
        "mosaic_edge_on.png", "mosaic_elliptical.png"}


def test_feature_conditioning_flags_extrapolation():
    generator = untrained_feature_generator()
    sample = generate(generator, [[0.5, 2.0], [0.05, 2.0]], n=1, steps=2)
    assert list(sample.catalog["extrapolated"]) == [False, True]
    assert list(sample.catalog["q"]) == [0.5, 0.05]
    parsed = generator.conditions.parse("0.3, 1.5", generator.name)
    np.testing.assert_array_equal(parsed[0], [0.3, 1.5])


def test_feature_generator_trains_on_catalog_columns(simulated, tmp_path):
    folder = train_generator(simulated, tmp_path / "g", feature_columns=["q", "half_light_radius_pix"],
                             preprocess=TINY_PREPROCESS, unet=TINY_UNET, max_epochs=1, batch_size=8,
                             accelerator="cpu")
    space = load_generator(folder).conditions
    assert space.kind == "features" and space.names == ("q", "half_light_radius_pix")
    assert space.minimum[0] == pytest.approx(float(np.min(simulated.catalog["q"])))


def test_unknown_condition_is_a_clear_error(class_generator):
    with pytest.raises(ConfigError, match=r"unknown condition 'spiral' \(classes: edge_on, elliptical\)"):
        generate(class_generator, ["spiral"], n=1, steps=1)


def test_feature_vector_of_wrong_length_is_a_clear_error():
    generator = untrained_feature_generator()
    with pytest.raises(ConfigError, match="feature-generator: feature vector has 3 values, expected 2"):
        generate(generator, [[0.5, 2.0, 1.0]], n=1, steps=1)


def test_folder_that_is_not_a_generator(tmp_path):
    with pytest.raises(MissingFileError, match="generator folder not found"):
        load_generator(tmp_path / "absent")
    with pytest.raises(ModelError, match="not a generator folder"):
        load_generator(tmp_path)
    classifier = ModelConfig("rotinv", 2, 3, 64, PreprocessConfig().to_dict(), {"kind": "classes"})
    (tmp_path / "config.json").write_text(json.dumps(dataclasses.asdict(classifier)))
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(ModelError, match=r"not a generator folder \(architecture 'rotinv'"):
        load_generator(tmp_path)


def test_generator_folder_keeps_the_training_preprocessing(class_generator):
    config = json.loads((class_generator / "config.json").read_text())
    assert config["architecture"] == "conditional-diffusion"
    assert PreprocessConfig.from_dict(config["preprocessing"]) == TINY_PREPROCESS
    assert config["target"]["conditions"]["names"] == ["edge_on", "elliptical"]


class BandStatistics(Encoder):
    """A tiny tuningfork encoder: per-band mean, spread and peak."""

    name, dim = "band-statistics", 6
    preprocess = PreprocessConfig(output_size=16, subtract_background=False, normalisation="none")

    def encode(self, images, sed=None):
        flat = np.asarray(images).reshape(len(images), images.shape[1], -1)
        return np.concatenate([flat.mean(-1), flat.std(-1), flat.max(-1)], axis=1).astype(np.float32)


def test_frechet_distance_of_a_shifted_set_is_the_squared_shift():
    vectors = np.random.default_rng(0).normal(size=(500, 3))
    assert frechet_distance(vectors, vectors) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(vectors, vectors + [3.0, 0.0, 4.0]) == pytest.approx(25.0, rel=1e-6)
    with pytest.raises(FeatureError, match="at least 2 embeddings"):
        frechet_distance(vectors[:1], vectors)
    with pytest.raises(FeatureError, match="equal d"):
        frechet_distance(vectors, vectors[:, :2])


def test_evaluation_reports_fidelity_and_conditional_accuracy(class_generator, simulated, tmp_path):
    always_edge_on = lambda images: ["edge_on"] * len(images)
    summary, ks = evaluate_generator(class_generator, simulated, encoder=BandStatistics(), classifier=always_edge_on,
                                     n_per_condition=6, steps=2, morphometry=False, output=tmp_path / "eval.csv")
    rows = {row["condition"]: row for row in summary}
    assert set(rows) == {"edge_on", "elliptical"} and ks is None
    assert rows["edge_on"]["conditional_accuracy"] == 1.0 and rows["elliptical"]["conditional_accuracy"] == 0.0
    assert rows["edge_on"]["n_generated"] == 6 and np.isfinite(rows["edge_on"]["frechet_distance"])
    assert rows["edge_on"]["frechet_distance"] >= 0 and (tmp_path / "eval.csv").is_file()


def test_real_galaxies_come_back_at_the_generator_resolution(class_generator, simulated):
    real = real_in_data_units(load_generator(class_generator), simulated)
    assert real.shape == (16, 2, 16, 16) and real.dtype == np.float32


def _sersic_stamps(n: float, count: int, seed: int) -> np.ndarray:
    import galsim

    rng = np.random.default_rng(seed)
    stamps = []
    for _ in range(count):
        profile = galsim.Sersic(n=n, half_light_radius=3.0, flux=4000.0)
        image = profile.drawImage(nx=32, ny=32, scale=1.0).array
        stamps.append((image + rng.normal(0.0, 0.5, image.shape))[None].astype(np.float32))
    return np.stack(stamps)


def test_morphometry_ks_separates_disks_from_spheroids_with_statmorph():
    disks, spheroids = _sersic_stamps(1.0, 3, seed=0), _sersic_stamps(4.0, 3, seed=1)
    table = morphometry_ks(disks, ["disk"] * 3, spheroids, ["disk"] * 3, quantities=("concentration",), min_values=3)
    assert table["ks_statistic"][0] == 1.0 and table["ks_valid"][0]
    assert table["real_median"][0] < table["generated_median"][0]


def test_morphometry_ks_groups_and_too_few_measurements(monkeypatch):
    from astropy.table import Table

    def peak_brightness(images, quantities, n_workers):
        # Stands in for statmorph: one 'quantity' per image, NaN for a blank one.
        peaks = [float(image.max()) if image.max() > 0 else np.nan for image in images]
        return Table({"concentration": peaks})

    monkeypatch.setattr("tuningfork.morphometry.morphometry_catalog", peak_brightness)
    rng = np.random.default_rng(0)
    real = rng.uniform(1, 2, (12, 1, 4, 4)).astype(np.float32)
    generated = np.concatenate([rng.uniform(1, 2, (6, 1, 4, 4)), rng.uniform(5, 6, (6, 1, 4, 4))]).astype(np.float32)
    generated[-5:] = 0.0
    groups = ["same"] * 6 + ["shifted"] * 6
    table = morphometry_ks(real, groups, generated, groups, quantities=("concentration",), min_values=5)
    rows = {row["group"]: row for row in table}
    assert rows["same"]["ks_valid"] and rows["same"]["ks_statistic"] < 0.7
    assert not rows["shifted"]["ks_valid"] and np.isnan(rows["shifted"]["ks_statistic"])
    assert rows["shifted"]["n_generated"] == 1


def test_augmentation_adds_exactly_the_requested_number_per_class(class_generator):
    from tuningfork.training.datamodule import Target
    from tuningfork.training.fit import _with_extra

    classifier_preprocess = PreprocessConfig(output_size=20)
    generated, generated_labels = generate_for_classifier(class_generator, ["edge_on", "edge_on"], 3,
                                                          classifier_preprocess, steps=2)
    assert generated.shape == (3, 2, 20, 20) and generated_labels == ["edge_on"] * 3
    assert generated.min() >= 0 and generated.max() <= 1
    images = np.zeros((5, 2, 20, 20), dtype=np.float32)
    labels = np.array([0, 0, 0, 1, 1])
    original = images.copy()
    target = Target(kind="classes", column="label", class_names=["edge_on", "elliptical", "spiral"])
    augmented, new_labels = _with_extra(images, labels, target, generated, generated_labels)
    assert augmented.shape == (8, 2, 20, 20)
    np.testing.assert_array_equal(np.bincount(new_labels, minlength=3) - np.bincount(labels, minlength=3), [3, 0, 0])
    np.testing.assert_array_equal(images, original)
    np.testing.assert_array_equal(augmented[5:], generated)


def test_augmentation_rejects_unknown_classes_and_other_crops(class_generator):
    from tuningfork.training.datamodule import Target
    from tuningfork.training.fit import _with_extra

    generator = load_generator(class_generator)
    images, labels = np.zeros((2, 2, 16, 16), dtype=np.float32), np.array([0, 1])
    target = Target(kind="classes", column="label", class_names=["edge_on", "elliptical"])
    with pytest.raises(ConfigError, match="class.*merger not among the training classes"):
        _with_extra(images, labels, target, np.zeros((2, 2, 16, 16), np.float32), ["merger", "edge_on"])
    with pytest.raises(ConfigError, match="unknown condition 'spiral'"):
        generate_for_classifier(generator, ["spiral"], 2, PreprocessConfig())
    with pytest.raises(ConfigError, match="no rare class given"):
        generate_for_classifier(generator, [], 2, PreprocessConfig())
    with pytest.raises(ConfigError, match="train them on the same field of view"):
        to_classifier_input(images, generator, PreprocessConfig(crop_fraction=0.5))


def test_supervised_training_adds_generated_galaxies_of_rare_classes(class_generator, simulated, tmp_path):
    from tuningfork.training.fit import train

    preprocess = PreprocessConfig(output_size=16)
    extra = generate_for_classifier(class_generator, ["edge_on"], 4, preprocess, steps=2)
    result = train(simulated, tmp_path / "classifier", preprocess=preprocess, epochs=1,
                   batch_size=8, accelerator="cpu", progress=False, architecture_options={"widths": (8, 16)},
                   extra_train=extra)
    assert result.metrics["n_generated"] == 4


def test_demo_tour_trains_and_samples_every_class(tmp_path):
    from tuningfork.generation.tour import generation_tour
    from tuningfork.simulation import write_sample

    sample = simulate(8, size=32, bands=("g", "r"), classes=("elliptical", "spiral"), seed=2, workers=1)
    paths = generation_tour(write_sample(sample, tmp_path / "sim", formats=("fits",)), tmp_path / "tour",
                            epochs=1, n_per_class=2)
    assert len(GalaxyCollection.open(paths["catalog"])) == 4
    assert {"mosaic_elliptical", "mosaic_spiral"} <= set(paths)


def test_generator_on_real_gz2_jpegs_returns_sky_subtracted_pixel_values(shared_data, tmp_path):
    catalog = GalaxyCollection.open(shared_data / "gz2-spirals" / "catalog.csv")
    collection = catalog.subset(np.arange(12))
    preprocess = PreprocessConfig(crop_pixels=207, output_size=16, stretch="linear", normalisation="none")
    generator = load_generator(train_generator(collection, tmp_path / "g", preprocess=preprocess, unet=TINY_UNET,
                                               max_epochs=1, batch_size=8, accelerator="cpu"))
    sample = generate(generator, list(generator.conditions.names), n=2, steps=2)
    assert sample.images.shape == (2 * len(generator.conditions.names), 3, 16, 16)
    # JPEG composites: 8-bit values minus the sky, so within about [-255, 255].
    real = real_in_data_units(generator, collection)
    np.testing.assert_allclose(real, Preprocessor(preprocess).batch(np.stack([g.image for g in collection])),
                               rtol=1e-4, atol=1e-3)
    assert -255 <= sample.images.min() and sample.images.max() <= 255
