"""The models shipped inside the package: they load by name, are intact, and score as their cards say."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.table import Table

from cli_helpers import invoke
from tuningfork.data import GalaxyCollection
from tuningfork.models import load_model
from tuningfork.models.shipped import check_shipped, resolve_model_folder, shipped_models
from tuningfork.training import evaluate, predict

SHIPPED = shipped_models()
NAMES = ("gzc-5class", "gzc-votes")


def test_the_default_models_are_shipped_with_complete_cards():
    assert set(NAMES) <= set(SHIPPED)
    for name in NAMES:
        card = SHIPPED[name].card
        for key in ("description", "input", "command", "training_catalog", "metrics", "files", "slice_check"):
            assert card[key], (name, key)
        assert len(card["training_catalog"]["sha256"]) == 64


@pytest.mark.parametrize("name", NAMES)
def test_shipped_models_match_their_checksums_and_load_by_name(name):
    assert check_shipped(SHIPPED[name]) == []
    model = load_model(name)
    assert model.folder == SHIPPED[name].folder
    assert model.config.in_channels == 3


@pytest.mark.parametrize("name", NAMES)
def test_shipped_models_carry_the_graph_of_their_weights(name):
    """The default engine runs them with ONNX Runtime, without torch, and it gives torch's outputs."""
    from tuningfork.models import open_model
    from tuningfork.models.export import OnnxRuntimeNetwork, stored_graph
    from tuningfork.models.inference import network_logits

    assert "network.onnx" in SHIPPED[name].card["files"]
    assert stored_graph(open_model(name)) == SHIPPED[name].folder / "network.onnx"
    model = load_model(name)
    images = np.random.default_rng(0).normal(size=(4, 3, model.config.image_size, model.config.image_size))
    images = images.astype(np.float32)
    np.testing.assert_allclose(network_logits(OnnxRuntimeNetwork(open_model(name), threads=1), images),
                               network_logits(model.network, images), atol=1e-4)


def test_a_changed_shipped_file_is_reported(tmp_path):
    import shutil

    from tuningfork.models.shipped import ShippedModel

    copy = tmp_path / "copy"
    shutil.copytree(SHIPPED["gzc-5class"].folder, copy)
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert check_shipped(ShippedModel("copy", copy, SHIPPED["gzc-5class"].card)) == ["config.json"]


def test_an_existing_path_wins_over_a_shipped_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_model_folder("gzc-5class") == SHIPPED["gzc-5class"].folder
    (tmp_path / "gzc-5class").mkdir()
    assert resolve_model_folder("gzc-5class") == tmp_path.joinpath("gzc-5class").relative_to(tmp_path)
    assert str(resolve_model_folder("no-such-model")) == "no-such-model"


def test_an_unknown_model_name_lists_the_shipped_ones():
    from tuningfork.errors import MissingFileError

    with pytest.raises(MissingFileError, match="no-such-model: shipped model .*gzc-5class"):
        load_model("no-such-model")


def _colour_stamps(n: int) -> GalaxyCollection:
    """Smooth and elongated synthetic gri galaxies of the shipped models' input size."""
    y, x = np.mgrid[-64:64, -64:64] / 10.0
    images = []
    for index in range(n):
        q = 1.0 if index % 2 else 0.3
        radius = np.hypot(x, y / q)
        image = np.exp(-radius) * np.array([0.6, 0.8, 1.0])[:, None, None]
        images.append(image.astype(np.float32))
    return GalaxyCollection.from_arrays(np.stack(images), Table({"id": [f"s{i}" for i in range(n)]}))


def test_models_command_lists_the_shipped_models_with_metrics():
    result, output = invoke("models")
    assert result.exit_code == 0, output
    for name in NAMES:
        assert name in output
    assert "accuracy" in output and "rmse" in output


@pytest.mark.parametrize("name", NAMES)
def test_predict_by_name_on_colour_stamps(name, tmp_path):
    table = predict(name, _colour_stamps(6), tmp_path / "p.parquet", progress=False)
    assert len(table) == 6
    if name == "gzc-votes":
        # Columns named and weighted as the training catalog's.
        first = sum(np.asarray(table[f"Class1.{k}"]) for k in (1, 2, 3))
        np.testing.assert_allclose(first, 1.0, atol=1e-5)
    else:
        assert set(table["predicted_class"]) <= set(load_model(name).config.class_names)


@pytest.mark.parametrize("name", NAMES)
def test_shipped_models_reproduce_their_recorded_slice_score(name, shared_data, tmp_path):
    card = SHIPPED[name].card
    catalog = shared_data / "gzc" / card["training_catalog"]["file"].rsplit("/", 1)[1]
    collection = GalaxyCollection.open(catalog)
    rows = int(card["slice_check"]["rows"].split()[1])
    val = np.flatnonzero(np.asarray([str(v) for v in collection.catalog["split"]]) == "val")[:rows]
    metrics = evaluate(name, collection.subset(val), tmp_path / "eval", progress=False)
    key = "rmse" if "rmse" in card["slice_check"] else "accuracy"
    assert metrics[key] == pytest.approx(card["slice_check"][key], abs=0.005)
