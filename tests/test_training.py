"""Training, prediction and evaluation end to end on tiny synthetic data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from astropy.table import Table

from tuningfork.data import GalaxyCollection
from tuningfork.errors import ConfigError, MissingColumnError, ModelError
from tuningfork.models import load_model
from tuningfork.preprocessing import PreprocessConfig
from tuningfork.training.calibration import class_thresholds
from tuningfork.training.datamodule import split_indices
from tuningfork.training.evaluate import evaluate
from tuningfork.training.fit import train
from tuningfork.training.module import Augmentation, GalaxyModule, affine_batch, shift_batch
from tuningfork.training.predict import expert_queue_path, predict
from tuningfork.training.trees import GZ2, GZ_DECALS

torch.set_num_threads(1)

TINY = {"widths": (8, 16), "view_features": 16, "hidden": 16}
SIZE = 24


def synthetic_galaxies(n: int, seed: int = 0, classes=("smooth", "spiral")) -> tuple[np.ndarray, np.ndarray]:
    """Round blobs ("smooth") and blobs with two arms ("spiral"), random orientation and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
    radius, angle = np.hypot(x, y), np.arctan2(y, x)
    labels = np.array([classes[i % len(classes)] for i in range(n)])
    images = np.empty((n, 3, SIZE, SIZE), dtype=np.float32)
    for index, label in enumerate(labels):
        galaxy = np.exp(-radius / rng.uniform(2.0, 3.0))
        if label == "spiral":
            phase = rng.uniform(0, 2 * np.pi)
            galaxy = galaxy + 0.6 * np.exp(-radius / 6) * (1 + np.cos(2 * angle - 1.2 * radius + phase))
        images[index] = galaxy * np.array([0.6, 0.8, 1.0])[:, None, None] + rng.normal(0, 0.03, (3, SIZE, SIZE))
    return images, labels


@pytest.fixture(scope="module")
def dataset():
    images, labels = synthetic_galaxies(64)
    split = np.where(np.arange(64) < 48, "train", "val")
    return GalaxyCollection.from_arrays(images, Table({"id": [f"g{i}" for i in range(64)], "label": labels, "split": split}))


def _train(data, folder, **options):
    settings = {"image_size": SIZE, "epochs": 3, "batch_size": 16, "progress": False,
                "architecture_options": TINY, "learning_rate": 3e-3}
    return train(data, folder, **(settings | options))


@pytest.fixture(scope="module")
def model_folder(dataset, tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "spirals"
    _train(dataset, folder)
    return folder


def test_train_writes_a_calibrated_model_folder(model_folder):
    config = json.loads((model_folder / "config.json").read_text())
    assert (model_folder / "weights.safetensors").is_file()
    # The network exported for ONNX Runtime, which `predict` then runs without torch.
    from tuningfork.models import open_model
    from tuningfork.models.export import stored_graph

    assert stored_graph(open_model(model_folder)) == model_folder / "network.onnx"
    assert config["target"] == {"kind": "classes", "column": "label", "class_names": ["smooth", "spiral"]}
    assert config["preprocessing"]["output_size"] == SIZE
    assert config["temperature"] > 0
    assert len(config["validation"]["confidence"]) == 16
    metrics = config["metrics"]
    assert metrics["n_train"] == 48 and metrics["n_val"] == 16 and metrics["epochs_run"] == 3
    assert 0.0 <= metrics["val_ece"] <= 1.0 and metrics["train_cpu_seconds"] > 0


def test_training_is_reproducible(dataset, tmp_path):
    first = _train(dataset, tmp_path / "a", epochs=1)
    second = _train(dataset, tmp_path / "b", epochs=1)
    digest = [json.loads((folder / "config.json").read_text())["weights_sha256"] for folder in (first.folder, second.folder)]
    assert digest[0] == digest[1]
    assert first.metrics["val_accuracy"] == second.metrics["val_accuracy"]


def test_a_cpu_budget_stops_training_early(dataset, tmp_path):
    result = _train(dataset, tmp_path / "m", epochs=50, budget_s=0.05)
    assert result.metrics["epochs_run"] < 5


def test_learns_the_synthetic_classes(dataset, tmp_path):
    result = _train(dataset, tmp_path / "m", epochs=20, learning_rate=1e-2)
    assert result.metrics["val_accuracy"] >= 0.8


def test_an_ensemble_averages_independently_trained_members(dataset, tmp_path):
    result = _train(dataset, tmp_path / "ensemble", ensemble=2, epochs=1)
    model = load_model(result.folder)
    first, second = model.network.members
    assert result.config.architecture_options["ensemble"] == 2
    assert result.config.metrics["ensemble_members"] == 2
    # Different seeds: the members are different networks.
    assert not torch.equal(first.head[-1].weight, second.head[-1].weight)
    images = torch.from_numpy(synthetic_galaxies(6, seed=3)[0])
    with torch.inference_mode():
        expected = (first(images) + second(images)) / 2
        torch.testing.assert_close(model.network(images), expected)
        # Still exactly invariant to the quarter turns each member pools over.
        torch.testing.assert_close(model.network(torch.rot90(images, 1, (2, 3))), expected, atol=1e-5, rtol=1e-4)


def test_ensemble_size_must_be_positive(dataset, tmp_path):
    with pytest.raises(ConfigError, match="ensemble"):
        _train(dataset, tmp_path / "bad", ensemble=0)


def test_fine_tuning_starts_from_a_model_folder_with_a_new_head(model_folder, tmp_path):
    images, labels = synthetic_galaxies(48, seed=5, classes=("smooth", "spiral", "faint"))
    images[labels == "faint"] *= 0.3
    three_classes = GalaxyCollection.from_arrays(images, Table({"id": [f"f{i}" for i in range(48)], "label": labels}))
    # A vanishing learning rate keeps whatever the network started from.
    result = _train(three_classes, tmp_path / "tuned", epochs=1, learning_rate=1e-12, init_from=model_folder)
    source = load_model(model_folder).network.state_dict()
    tuned = load_model(result.folder).network.state_dict()
    convolutions = [name for name, tensor in source.items() if tensor.ndim == 4]
    assert convolutions
    for name in convolutions:
        torch.testing.assert_close(tuned[name], source[name])
    assert tuned["head.4.weight"].shape[0] == 3 and source["head.4.weight"].shape[0] == 2
    assert result.config.metrics["initialised_from"] == str(model_folder)


def test_head_only_fine_tuning_keeps_the_encoder_and_its_batch_norm_statistics(model_folder, dataset, tmp_path):
    result = _train(dataset, tmp_path / "head", epochs=2, learning_rate=1e-2, init_from=model_folder,
                    freeze_encoder=True)
    source = load_model(model_folder).network.state_dict()
    tuned = load_model(result.folder).network.state_dict()
    encoder = [name for name in source if not name.startswith("head.")]
    assert any("running_mean" in name for name in encoder)
    for name in encoder:
        torch.testing.assert_close(tuned[name], source[name])
    assert not torch.equal(tuned["head.4.weight"], source["head.4.weight"])
    tuning = result.metrics["fine_tuning"]
    assert tuning["freeze_encoder"] and tuning["trainable_parameters"] < sum(t.numel() for t in source.values()) / 2


def test_layer_decay_gives_slower_rates_to_blocks_nearer_the_input():
    from tuningfork.models import create_model
    from tuningfork.training.finetune import layer_decay_groups

    network = create_model("rotinv", 2, in_channels=1, image_size=SIZE, **TINY)
    groups = layer_decay_groups(network, 1e-3, 0.5)
    rates = [group["lr"] for group in groups]
    assert rates[-1] == 1e-3 and rates == sorted(rates) and rates[0] < rates[-1] * 0.5 ** 2
    covered = sum(len(group["params"]) for group in groups)
    assert covered == len(list(network.parameters()))
    with pytest.raises(ConfigError, match="layer decay"):
        layer_decay_groups(network, 1e-3, 1.5)


def test_fine_tuning_options_need_a_model_to_start_from(dataset, tmp_path):
    with pytest.raises(ConfigError, match="init_from"):
        _train(dataset, tmp_path / "m", freeze_encoder=True)
    with pytest.raises(ConfigError, match="layer_decay"):
        _train(dataset, tmp_path / "m", layer_decay=0.0)


def test_layer_decay_fine_tuning_trains(model_folder, dataset, tmp_path):
    result = _train(dataset, tmp_path / "decayed", epochs=1, init_from=model_folder, layer_decay=0.7)
    assert result.metrics["fine_tuning"]["layer_decay"] == 0.7
    assert 0.0 <= result.metrics["val_accuracy"] <= 1.0


def test_fine_tuning_refuses_a_folder_of_another_shape(model_folder, dataset, tmp_path):
    other = {"widths": (4, 8), "view_features": 8, "hidden": 8}
    with pytest.raises(ModelError, match=r"only \d+ of the new network's \d+ weight tensors match"):
        _train(dataset, tmp_path / "tuned", epochs=1, architecture_options=other, init_from=model_folder)


def test_predict_writes_probabilities_and_triage(model_folder, dataset, tmp_path):
    output = tmp_path / "predictions.parquet"
    table = predict(model_folder, dataset, output, min_confidence=0.6)
    assert output.is_file() and len(Table.read(output)) == 64
    np.testing.assert_allclose(table["prob_smooth"] + table["prob_spiral"], 1.0, rtol=1e-6)
    assert set(table["predicted_class"]) <= {"smooth", "spiral"}
    expert = table["triage"] == "expert"
    np.testing.assert_array_equal(expert, table["confidence"] < 0.6)
    assert np.isnan(table["expert_rank"][~expert]).all()
    queue = Table.read(expert_queue_path(output))
    assert len(queue) == expert.sum()
    assert list(queue["expert_rank"]) == list(range(1, len(queue) + 1))
    assert np.all(np.diff(queue["expert_priority"]) <= 1e-12)


@pytest.mark.parametrize("tta", [False, True])
def test_onnx_runtime_engine_predicts_what_torch_predicts(model_folder, dataset, tta):
    eager = predict(model_folder, dataset, tta=tta)
    onnx = predict(model_folder, dataset, tta=tta, engine="onnx")
    assert list(onnx["predicted_class"]) == list(eager["predicted_class"])
    np.testing.assert_allclose(onnx["prob_spiral"], eager["prob_spiral"], atol=1e-5)


def test_unknown_inference_engine_is_refused(model_folder, dataset):
    with pytest.raises(ConfigError, match="engine 'tensorrt'"):
        predict(model_folder, dataset, engine="tensorrt")


def test_predict_target_accuracy_uses_the_validation_split(model_folder, dataset):
    config = load_model(model_folder).config
    validation = config.validation
    thresholds = class_thresholds(validation["confidence"], validation["correct"], validation["predicted"],
                                  len(config.class_names), 0.6)
    table = predict(model_folder, dataset, target_accuracy=0.6)
    codes = [config.class_names.index(name) for name in table["predicted_class"]]
    np.testing.assert_array_equal(table["threshold"], thresholds[codes])
    np.testing.assert_array_equal(table["triage"] == "confident", table["confidence"] >= table["threshold"])
    with pytest.raises(ConfigError, match="not both"):
        predict(model_folder, dataset, target_accuracy=0.9, min_confidence=0.9)


def test_tta_averages_the_eight_d4_images():
    from tuningfork.models import create_model
    from tuningfork.models.inference import network_logits, tta_elements

    torch.manual_seed(0)
    network = create_model("rotinv", 2, image_size=SIZE, group="c4", **TINY).eval()
    images = synthetic_galaxies(4)[0]
    averaged = network_logits(network, images, tta=True)
    # A c4-invariant network sees only two distinct images: the original and its mirror.
    with torch.no_grad():
        tensor = torch.from_numpy(images)
        expected = ((network(tensor) + network(tensor.flip(-1))) / 2).numpy()
    np.testing.assert_allclose(averaged, expected, atol=1e-5)
    assert not np.allclose(averaged, network_logits(network, images), atol=1e-5)
    assert tta_elements(create_model("rotinv", 2, image_size=SIZE, group="d4", **TINY)) == (0,)
    assert len(tta_elements(create_model("resnet10t", 2))) == 8


def test_predict_refuses_classes_the_model_lacks(model_folder):
    images, _ = synthetic_galaxies(4)
    data = GalaxyCollection.from_arrays(images, Table({"id": list("abcd"), "label": ["smooth", "bar", "bar", "ring"]}))
    with pytest.raises(ModelError, match="classes bar, ring of column 'label' are not among the model's classes"):
        predict(model_folder, data)


def test_predict_refuses_images_of_another_band_count(model_folder):
    images, _ = synthetic_galaxies(2)
    with pytest.raises(ModelError, match="expects"):
        predict(model_folder, GalaxyCollection.from_arrays(images[:, :1]))


def test_evaluate_writes_metrics_and_figures(model_folder, dataset, tmp_path):
    metrics = evaluate(model_folder, dataset, tmp_path / "eval", split="val")
    assert metrics["n"] == 16
    assert set(metrics["per_class"]) == {"smooth", "spiral"}
    assert np.sum(metrics["confusion_matrix"]) == 16
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["accuracy"] == metrics["accuracy"]
    for figure in ("confusion_matrix", "calibration", "coverage_accuracy", "confidence_mosaic"):
        assert (tmp_path / "eval" / f"{figure}.png").stat().st_size > 1000


def test_missing_label_column_names_the_data(dataset, tmp_path):
    with pytest.raises(MissingColumnError, match="no column 'morphology'"):
        _train(dataset, tmp_path / "m", target="morphology")


def test_unknown_architecture_is_refused_before_training(dataset, tmp_path):
    with pytest.raises(ConfigError, match="unknown architecture 'resnet9000'"):
        _train(dataset, tmp_path / "m", architecture="resnet9000", architecture_options={})
    assert not (tmp_path / "m").exists()


def test_vote_model_on_gz_decals_counts(tmp_path):
    images, _ = synthetic_galaxies(40, seed=3)
    rng = np.random.default_rng(0)
    columns = {"id": [f"v{i}" for i in range(40)]}
    for name in GZ_DECALS.count_columns:
        columns[name] = rng.integers(0, 6, 40)
    data = GalaxyCollection.from_arrays(images, Table(columns))
    result = _train(data, tmp_path / "votes", target="label", tree="gz_decals", epochs=1)
    assert result.config.target == {"kind": "votes", "tree": "gz_decals", "loss": "dirichlet"}
    table = predict(tmp_path / "votes", data, min_confidence=0.5)
    first = [f"{name}_fraction" for name in GZ_DECALS.count_columns[:3]]
    np.testing.assert_allclose(sum(table[name] for name in first), 1.0, rtol=1e-6)
    assert all(leaf.split("/")[0] in ("smooth", "featured-or-disk", "artifact") for leaf in table["predicted_class"])
    metrics = evaluate(tmp_path / "votes", data, tmp_path / "eval")
    assert 0.0 < metrics["rmse"] < 1.0
    assert set(metrics["agreement"]) == {question.name for question in GZ_DECALS.questions}


def test_vote_model_on_kaggle_gz2_fractions(tmp_path):
    images, _ = synthetic_galaxies(24, seed=4)
    fractions = GZ2.normalise(np.random.default_rng(1).random((24, GZ2.num_answers)))
    columns = {"id": [f"k{i}" for i in range(24)]}
    # The Kaggle solutions file holds cumulative fractions.
    for name, values in zip(GZ2.count_columns, GZ2.cumulative(fractions).T):
        columns[name] = values
    data = GalaxyCollection.from_arrays(images, Table(columns))
    result = _train(data, tmp_path / "gz2", tree="gz2", epochs=1)
    assert result.config.target["loss"] == "mse"
    assert 0.0 < result.metrics["val_rmse"] < 1.0
    table = predict(tmp_path / "gz2", data)
    # Named and weighted as the training catalog: cumulative challenge columns.
    assert "Class1.1" in table.colnames and "Class1.1_fraction" not in table.colnames
    first = sum(np.asarray(table[f"Class1.{k}"]) for k in (1, 2, 3))
    odd = np.asarray(table["Class6.1"]) + np.asarray(table["Class6.2"])
    np.testing.assert_allclose(first, 1.0, atol=1e-5)
    np.testing.assert_allclose(odd, 1.0, atol=1e-5)
    assert (np.asarray(table["Class7.1"]) <= np.asarray(table["Class1.1"]) + 1e-6).all()
    with pytest.raises(ConfigError, match="hold vote fractions, not counts"):
        _train(data, tmp_path / "bad", tree="gz2", vote_loss="dirichlet")


def test_vote_model_needs_the_tree_columns(dataset, tmp_path):
    with pytest.raises(MissingColumnError, match="smooth-or-featured_smooth"):
        _train(dataset, tmp_path / "m", tree="gz_decals")


def test_split_column_or_stratified_random_split(dataset):
    splits = split_indices(dataset)
    assert (len(splits["train"]), len(splits["val"]), len(splits["test"])) == (48, 16, 0)
    labels = np.array([0, 1] * 10)
    random = split_indices(dataset.subset(range(20)), split_column=None, val_fraction=0.2, stratify=labels)
    assert len(random["val"]) == 4 and labels[random["val"]].sum() == 2


def test_shift_batch_moves_each_image_by_its_own_shift():
    images = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).reshape(2, 1, 5, 5)
    shifted = shift_batch(images, torch.tensor([[1, 0], [0, -2]]))
    torch.testing.assert_close(shifted[0, 0, 1:], images[0, 0, :-1])
    torch.testing.assert_close(shifted[1, 0, :, :3], images[1, 0, :, 2:])
    torch.testing.assert_close(shifted[1, 0, :, 3:], images[1, 0, :, 4:].expand(5, 2))  # edge replicated


def test_affine_batch_rotates_shifts_and_zooms_about_the_centre():
    images = torch.rand(2, 3, 16, 16)
    quarter = affine_batch(images, torch.full((2,), np.pi / 2), torch.ones(2), torch.zeros(2, 2))
    torch.testing.assert_close(quarter, torch.rot90(images, 1, (-2, -1)), atol=1e-5, rtol=0)
    shifts = torch.tensor([[1, 0], [0, -2]])
    moved = affine_batch(images, torch.zeros(2), torch.ones(2), shifts.float())
    torch.testing.assert_close(moved, shift_batch(images, shifts), atol=1e-5, rtol=0)
    # Zooming in by 2 on a radial ramp doubles the ramp's slope near the centre.
    y, x = np.mgrid[:16, :16] - 7.5
    ramp = torch.from_numpy(np.hypot(x, y)).float().expand(1, 1, 16, 16)
    zoomed = affine_batch(ramp, torch.zeros(1), torch.full((1,), 2.0), torch.zeros(1, 2))
    assert zoomed[0, 0, 7, 4].item() == pytest.approx(ramp[0, 0, 7, 4].item() / 2, rel=0.1)


def test_augmentation_leaves_the_batch_untouched():
    from tuningfork.models import create_model
    from tuningfork.training.datamodule import Target

    module = GalaxyModule(create_model("rotinv", 2, image_size=SIZE, **TINY), Target("classes", "label", ["a", "b"]),
                          augmentation=Augmentation(shift_pixels=2, flux_scale=0.1, pixel_noise=0.1))
    images = torch.rand(4, 3, SIZE, SIZE)
    before = images.clone()
    augmented = module.augment(images)
    assert torch.equal(images, before)
    assert augmented.shape == images.shape and not torch.equal(augmented, images)


def test_validation_balanced_accuracy_is_the_mean_recall_over_classes():
    from tuningfork.models import create_model
    from tuningfork.training.datamodule import Target

    module = GalaxyModule(create_model("rotinv", 2, image_size=SIZE, **TINY), Target("classes", "label", ["a", "b"]))
    # Always "a": accuracy 0.75 on this batch, but the rare "b" is never found.
    logits = torch.tensor([[2.0, 0.0]] * 4)
    module.val_balanced_accuracy.update(logits, torch.tensor([0, 0, 0, 1]))
    assert module.val_balanced_accuracy.compute().item() == pytest.approx(0.5)


def test_balanced_class_weights_train_on_an_imbalanced_set(tmp_path):
    images, labels = synthetic_galaxies(60)
    keep = np.flatnonzero((labels == "smooth") | (np.arange(60) % 6 == 1))
    split = np.where(np.arange(len(keep)) % 4 == 0, "val", "train")
    collection = GalaxyCollection.from_arrays(
        images[keep], Table({"id": [f"g{i}" for i in keep], "label": labels[keep], "split": split})
    )
    result = _train(collection, tmp_path / "weighted", class_weights="balanced", epochs=2)
    assert 0.0 <= result.config.metrics["val_balanced_accuracy"] <= 1.0


def test_real_galaxy_zoo_images_end_to_end(shared_data, tmp_path):
    catalog = shared_data / "gz2-spirals" / "catalog.csv"
    collection = GalaxyCollection.open(catalog)
    rows = np.concatenate([np.flatnonzero(collection.catalog["split"] == name)[:count]
                           for name, count in (("train", 32), ("val", 16))])
    data = collection.subset(rows)
    preprocess = PreprocessConfig(crop_pixels=207, output_size=32)
    train(data, tmp_path / "gz2", epochs=1, batch_size=16, preprocess=preprocess, progress=False,
          architecture_options=TINY)
    model = load_model(tmp_path / "gz2")
    assert model.config.preprocessing["crop_pixels"] == 207 and model.config.in_channels == 3
    table = predict(tmp_path / "gz2", data.subset(range(8)))
    np.testing.assert_allclose(table["prob_non_spiral"] + table["prob_spiral"], 1.0, rtol=1e-6)


def test_target_is_serialisable_and_stores_only_the_fields_of_its_kind():
    from tuningfork.training.datamodule import Target

    classes = Target("classes", "label", ["a", "b"])
    votes = Target("votes", tree="gz2", loss="mse")
    assert classes.to_dict() == {"kind": "classes", "column": "label", "class_names": ["a", "b"]}
    assert votes.to_dict() == {"kind": "votes", "tree": "gz2", "loss": "mse"}
    assert Target.from_dict(classes.to_dict()) == classes and Target.from_json(votes.to_json()) == votes
    with pytest.raises(ConfigError, match="unknown key.*'labels'"):
        Target.from_dict({"kind": "classes", "labels": ["a"]})
    with pytest.raises(ConfigError, match="target kind"):
        Target("regression")


def test_a_class_with_one_galaxy_trains_instead_of_breaking_the_stratified_split():
    from astropy.table import Table

    from tuningfork.data import GalaxyCollection

    labels = np.array(["a"] * 10 + ["b"] * 10 + ["c"])
    collection = GalaxyCollection.from_arrays(np.zeros((21, 1, 4, 4), dtype=np.float32), Table({"label": labels}))
    codes = np.unique(labels, return_inverse=True)[1]
    splits = split_indices(collection, None, 0.2, 0, codes)
    assert 20 in splits["train"] and 20 not in splits["val"]
    assert sorted(np.concatenate([splits["train"], splits["val"]])) == list(range(21))
    assert {labels[row] for row in splits["val"]} == {"a", "b"}
