"""Networks (rotinv, hybrid, timm backbones) and model folders."""

from __future__ import annotations

import json

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import save_file

from tuningfork.errors import ConfigError, CorruptFileError, MissingFileError
from tuningfork.models import (
    ModelConfig,
    RotationInvariantNet,
    create_model,
    load_model,
    save_model,
)
from tuningfork.models.nets.rotinv import dihedral_views
from tuningfork.preprocessing import d4_apply_torch, d4_element

torch.set_num_threads(1)

SMALL_ROTINV = {"widths": (8, 16), "view_features": 16, "hidden": 16}


def _images(n=3, size=32, bands=3, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(n, bands, size, size)).astype(np.float32))


@pytest.mark.parametrize("group", ["c4", "d4"])
def test_rotinv_is_invariant_to_the_group_it_pools_over(group):
    torch.manual_seed(0)
    net = RotationInvariantNet(5, image_size=32, group=group, **SMALL_ROTINV).eval()
    images = _images()
    elements = [d4_element(k, flip) for k in range(4) for flip in ((False, True) if group == "d4" else (False,))]
    with torch.no_grad():
        reference = net(images)
        for element in elements:
            transformed = net(d4_apply_torch(images, element))
            torch.testing.assert_close(transformed, reference, rtol=1e-5, atol=1e-5)


def test_rotinv_c4_is_not_invariant_to_flips():
    # Guards the invariance test against a network that ignores its input.
    torch.manual_seed(0)
    net = RotationInvariantNet(5, image_size=32, group="c4", **SMALL_ROTINV).eval()
    images = _images()
    with torch.no_grad():
        difference = (net(images) - net(d4_apply_torch(images, d4_element(0, True)))).abs().max()
    assert difference > 1e-4


def test_viewpoints_are_the_d4_images_in_element_order():
    images = _images(2, 8)
    views = dihedral_views(images, "d4")
    for rotations in range(4):
        assert torch.equal(views[rotations], d4_apply_torch(images, d4_element(rotations, False)))
        assert torch.equal(views[4 + rotations].flip(-1), views[rotations])


def test_rotinv_rejects_bad_options():
    with pytest.raises(ConfigError, match="symmetry group"):
        RotationInvariantNet(2, group="c8")
    with pytest.raises(ConfigError, match="crop_fraction"):
        RotationInvariantNet(2, crop_fraction=0.2)


@pytest.mark.parametrize("architecture", ["rotinv", "hybrid", "resnet10t"])
def test_every_architecture_maps_images_to_logits(architecture):
    net = create_model(architecture, 4, in_channels=1, image_size=32).eval()
    with torch.no_grad():
        out = net(_images(2, 32, bands=1))
    assert out.shape == (2, 4)
    assert torch.isfinite(out).all()


def test_unknown_architecture_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown architecture 'no_such_net'"):
        create_model("no_such_net", 2)


def test_bad_architecture_option_is_a_config_error():
    with pytest.raises(ConfigError, match="rotinv"):
        create_model("rotinv", 2, no_such_option=3)


def test_weights_file_only_for_timm_backbones(tmp_path):
    with pytest.raises(ConfigError, match="timm backbones only"):
        create_model("rotinv", 2, weights=tmp_path / "w.safetensors")


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_timm_backbone_loads_a_local_weights_file(tmp_path, suffix):
    pretrained = timm.create_model("resnet10t", num_classes=7)
    path = tmp_path / f"pretrained{suffix}"
    if suffix == ".safetensors":
        save_file(pretrained.state_dict(), path)
    else:
        torch.save(pretrained.state_dict(), path)
    net = create_model("resnet10t", 2, weights=path)
    assert torch.equal(net.conv1[0].weight, pretrained.conv1[0].weight)
    # Another number of classes: the head is fresh, with the right shape.
    assert net.fc.weight.shape == (2, pretrained.fc.in_features)


def test_timm_backbone_adapts_the_first_convolution_to_one_band(tmp_path):
    pretrained = timm.create_model("resnet10t")
    save_file(pretrained.state_dict(), tmp_path / "w.safetensors")
    net = create_model("resnet10t", 2, in_channels=1, weights=tmp_path / "w.safetensors")
    assert net.conv1[0].weight.shape[1] == 1
    torch.testing.assert_close(net.conv1[0].weight[:, 0], pretrained.conv1[0].weight.sum(dim=1))


def test_corrupt_weights_file_names_the_file(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"this is not a tensor file")
    with pytest.raises(CorruptFileError, match="broken.safetensors"):
        create_model("resnet10t", 2, weights=path)


def test_weights_of_another_architecture_are_refused(tmp_path):
    save_file(timm.create_model("resnet10t").state_dict(), tmp_path / "resnet.safetensors")
    with pytest.raises(CorruptFileError, match="does not hold weights for convnext_atto"):
        create_model("convnext_atto", 2, weights=tmp_path / "resnet.safetensors")


def test_missing_weights_file(tmp_path):
    with pytest.raises(MissingFileError, match="nothing.pt"):
        create_model("resnet10t", 2, weights=tmp_path / "nothing.pt")


def _config(architecture="rotinv", options=None):
    return ModelConfig(
        architecture=architecture, num_outputs=3, in_channels=3, image_size=32, preprocessing={"output_size": 32},
        target={"kind": "classes", "column": "label", "class_names": ["a", "b", "c"]},
        architecture_options=options or {},
    )


@pytest.mark.parametrize("architecture, options", [("rotinv", SMALL_ROTINV), ("hybrid", {}), ("resnet10t", {})])
def test_save_load_round_trip_gives_identical_predictions(tmp_path, architecture, options):
    torch.manual_seed(1)
    net = create_model(architecture, 3, image_size=32, **options).eval()
    save_model(tmp_path / "model", net, _config(architecture, options))
    loaded = load_model(tmp_path / "model")
    images = _images(4, 32)
    with torch.no_grad():
        assert torch.equal(net(images), loaded.network(images))
    assert loaded.config.class_names == ["a", "b", "c"]
    assert loaded.config.versions["torch"] == torch.__version__.split("+")[0]


def test_config_records_architecture_and_versions(tmp_path):
    save_model(tmp_path, create_model("rotinv", 3, image_size=32, **SMALL_ROTINV), _config(options=SMALL_ROTINV))
    document = json.loads((tmp_path / "config.json").read_text())
    assert document["architecture"] == "rotinv"
    assert document["architecture_options"]["widths"] == [8, 16]
    assert {"torch", "timm", "tuningfork"} <= set(document["versions"])
    assert len(document["weights_sha256"]) == 64


def test_changed_weights_are_detected(tmp_path):
    save_model(tmp_path, create_model("rotinv", 3, image_size=32, **SMALL_ROTINV), _config(options=SMALL_ROTINV))
    with open(tmp_path / "weights.safetensors", "r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(CorruptFileError, match="weights.safetensors"):
        load_model(tmp_path)


def test_corrupt_config_names_the_file(tmp_path):
    save_model(tmp_path, create_model("rotinv", 3, image_size=32, **SMALL_ROTINV), _config(options=SMALL_ROTINV))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(CorruptFileError, match="config.json"):
        load_model(tmp_path)


def test_missing_model_folder(tmp_path):
    with pytest.raises(MissingFileError, match="model folder"):
        load_model(tmp_path / "absent")


def test_onnx_export_gives_the_same_logits(tmp_path):
    import onnxruntime

    from tuningfork.models.export import export_onnx

    torch.manual_seed(0)
    net = create_model("rotinv", 3, image_size=32, **SMALL_ROTINV).eval()
    save_model(tmp_path / "model", net, _config(options=SMALL_ROTINV))
    path = export_onnx(tmp_path / "model", tmp_path / "model.onnx")
    images = _images(5, 32)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    exported = session.run(None, {"images": images.numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(exported, net(images).numpy(), atol=1e-5)


def _saved_with_graph(folder, seed=0):
    from tuningfork.models.export import export_onnx

    torch.manual_seed(seed)
    net = create_model("rotinv", 3, image_size=32, **SMALL_ROTINV).eval()
    save_model(folder, net, _config(options=SMALL_ROTINV))
    export_onnx(folder)
    return net


@pytest.mark.parametrize("tta", [False, True])
def test_a_stored_graph_runs_without_building_the_network(tmp_path, tta):
    from tuningfork.models import open_model
    from tuningfork.models.export import OnnxRuntimeNetwork, stored_graph
    from tuningfork.models.inference import network_logits

    net = _saved_with_graph(tmp_path / "model")
    stored = open_model(tmp_path / "model")
    assert stored_graph(stored) == tmp_path / "model" / "network.onnx"
    onnx = OnnxRuntimeNetwork(stored, threads=1)
    # The graph carries the network's test-time-augmentation elements: the mirror image for a c4 network.
    assert onnx.elements == (0, d4_element(0, True))
    images = _images(5, 32).numpy()
    np.testing.assert_allclose(network_logits(onnx, images, batch_size=2, tta=tta),
                               network_logits(net, images, batch_size=2, tta=tta), atol=1e-5)


def test_a_stale_or_broken_graph_is_passed_over_for_a_fresh_export(tmp_path):
    from tuningfork.models import open_model
    from tuningfork.models.export import OnnxRuntimeNetwork, stored_graph
    from tuningfork.models.inference import network_logits

    _saved_with_graph(tmp_path / "other", seed=1)
    net = _saved_with_graph(tmp_path / "model")
    # Retrained into the same folder: the graph of the earlier weights must not run.
    (tmp_path / "model" / "network.onnx").write_bytes((tmp_path / "other" / "network.onnx").read_bytes())
    assert stored_graph(open_model(tmp_path / "model")) is None
    (tmp_path / "broken.onnx").write_bytes(b"not a graph")
    assert stored_graph(open_model(tmp_path / "model"), tmp_path / "broken.onnx") is None
    images = _images(4, 32).numpy()
    logits = network_logits(OnnxRuntimeNetwork(open_model(tmp_path / "model"), 1, tmp_path / "broken.onnx"), images)
    np.testing.assert_allclose(logits, network_logits(net, images), atol=1e-5)


def test_open_model_checks_the_folder_without_torch_networks(tmp_path):
    from tuningfork.models import open_model

    _saved_with_graph(tmp_path / "model")
    stored = open_model(tmp_path / "model")
    assert stored.config.class_names == ["a", "b", "c"] and len(stored.weights_sha256) == 64
    assert not hasattr(stored, "network")
    # An opened folder builds its network without being read and checked again; a loaded one is kept.
    loaded = load_model(stored)
    assert loaded.weights_sha256 == stored.weights_sha256 and loaded.network is not None
    assert load_model(loaded) is loaded
    weights = tmp_path / "model" / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8])
    with pytest.raises(CorruptFileError, match="weights.safetensors"):
        open_model(tmp_path / "model")


def test_the_auto_engine_is_onnx_runtime_only_with_a_graph_of_the_weights(tmp_path):
    from tuningfork.errors import ConfigError
    from tuningfork.models import open_model
    from tuningfork.training.predict import resolve_engine

    _saved_with_graph(tmp_path / "model")
    assert resolve_engine("auto", open_model(tmp_path / "model")) == "onnx"
    assert resolve_engine("torch", open_model(tmp_path / "model")) == "torch"
    (tmp_path / "model" / "network.onnx").unlink()
    assert resolve_engine("auto", open_model(tmp_path / "model")) == "torch"
    with pytest.raises(ConfigError, match="'cuda'.*auto, torch, onnx"):
        resolve_engine("cuda", open_model(tmp_path / "model"))
