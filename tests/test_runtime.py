"""The one Lightning setup (models/runtime.py) and LightningModules that pickle."""

from __future__ import annotations

import logging
import pickle

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tuningfork.errors import ConfigError
from tuningfork.models.runtime import BestWeights, CpuBudget, find_callback, make_trainer


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


class _Climb(L.LightningModule):
    """One weight that plain SGD raises by 1 per step; ``val_loss`` is scripted per epoch."""

    def __init__(self, val_losses=()):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.val_losses = list(val_losses)

    def training_step(self, batch, batch_index):
        loss = -self.weight.sum()
        self.log("train_loss", loss, on_step=False, on_epoch=True, batch_size=1)
        return loss

    def validation_step(self, batch, batch_index):
        self.log("val_loss", self.val_losses[self.current_epoch], batch_size=1)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1.0)


def _loader(batches: int = 1) -> DataLoader:
    return DataLoader(TensorDataset(torch.zeros(batches, 1)), batch_size=1)


def test_trainer_is_quiet_and_writes_nothing_by_default(tmp_path, monkeypatch, caplog, capsys):
    monkeypatch.chdir(tmp_path)
    lightning_logger = logging.getLogger("lightning.pytorch")
    level = lightning_logger.level
    with caplog.at_level(logging.INFO):
        trainer = make_trainer(max_epochs=2, accelerator="cpu")
        trainer.fit(_Climb(), _loader())
    assert trainer.current_epoch == 2
    assert trainer.logger is None and trainer.checkpoint_callback is None
    assert not trainer.progress_bar_callback and trainer.num_sanity_val_steps == 0
    shown = caplog.text + capsys.readouterr().err
    assert "GPU available" not in shown and "max_epochs" not in shown
    assert lightning_logger.level == level
    assert list(tmp_path.iterdir()) == []


def test_a_cpu_budget_stops_training():
    trainer = make_trainer(max_epochs=10**6, accelerator="cpu", budget_s=0.2)
    trainer.fit(_Climb(), _loader(batches=4))
    budget = find_callback(trainer, CpuBudget)
    assert budget.used() >= 0.2 and budget.fraction_used() >= 1.0
    assert trainer.current_epoch < 10**6


def test_best_weights_keeps_the_epoch_with_the_best_validation():
    module, best = _Climb([3.0, 1.0, 2.0]), BestWeights("val_loss", "min")
    make_trainer(max_epochs=3, accelerator="cpu", callbacks=[best]).fit(module, _loader(), _loader())
    assert best.scores == [3.0, 1.0, 2.0] and len(best.train_losses) == 3
    assert module.weight.item() == 3.0
    best.restore(module)
    assert module.weight.item() == 2.0


def test_best_weights_ranks_a_nan_score_last():
    module, best = _Climb([float("nan"), 0.5, 0.7]), BestWeights("val_loss", "max")
    make_trainer(max_epochs=3, accelerator="cpu", callbacks=[best]).fit(module, _loader(), _loader())
    best.restore(module)
    assert module.weight.item() == 3.0
    with pytest.raises(ConfigError, match="'min' or 'max'"):
        BestWeights(mode="lowest")


def test_best_weights_without_validation_keeps_the_last_weights():
    module, best = _Climb(), BestWeights()
    make_trainer(max_epochs=2, accelerator="cpu", callbacks=[best]).fit(module, _loader())
    best.restore(module)
    assert best.best_state is None and module.weight.item() == 2.0


def _round_trip(module: torch.nn.Module) -> torch.nn.Module:
    copy = pickle.loads(pickle.dumps(module))
    assert type(copy) is type(module)
    original, restored = module.state_dict(), copy.state_dict()
    assert original.keys() == restored.keys()
    for name, value in original.items():
        torch.testing.assert_close(restored[name], value)
    return copy


def test_astropt_module_pickles():
    from tuningfork.embeddings.pretrain import AstroPTModule
    from tuningfork.models.nets.astropt import AstroPTConfig

    config = AstroPTConfig.from_size("tiny", bands=1, image_size=16, patch_size=8)
    module = AstroPTModule(config.to_dict(), 1e-3, 0.05, True, 0)
    copy = _round_trip(module)
    images = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(copy.model.eval().loss(images, None), module.model.eval().loss(images, None))


def test_diffusion_module_pickles():
    from tuningfork.generation.train import DiffusionModule, noise_schedule
    from tuningfork.models.conditions import ConditionSpace
    from tuningfork.models.nets.unet import ConditionalUNet, UNetConfig

    unet = UNetConfig(image_size=16, bands=1, channels=(8, 16), layers_per_block=1, attention_levels=0, norm_groups=4)
    model = ConditionalUNet(unet, ConditionSpace.from_classes(["a", "b"]))
    module = DiffusionModule(model, noise_schedule(10), 1e-3, 0.1, 0.9, True, 0)
    copy = _round_trip(module)
    assert copy.scheduler.config.num_train_timesteps == 10
    for shadow, weight in zip(copy.ema.shadow_params, copy.model.parameters()):
        torch.testing.assert_close(shadow, weight)


def test_denoising_task_pickles_with_its_noise_generator():
    from tuningfork.clustering.autoencoder import DenoisingTask
    from tuningfork.models.nets.autoencoder import DenoisingAutoencoder

    module = DenoisingTask(DenoisingAutoencoder(1, 4, 1), 1e-3, True, 7)
    copy = _round_trip(module)
    assert torch.equal(torch.rand(3, generator=copy.noise), torch.rand(3, generator=module.noise))


def test_galaxy_module_pickles():
    from tuningfork.models import create_model
    from tuningfork.training.datamodule import Target
    from tuningfork.training.module import GalaxyModule

    network = create_model("rotinv", num_outputs=2, in_channels=1, image_size=16, widths=(4, 8))
    module = GalaxyModule(network, Target("classes", "label", ["a", "b"]), class_weights=np.array([1.0, 2.0]))
    copy = _round_trip(module)
    images = torch.rand(2, 1, 16, 16)
    torch.testing.assert_close(copy.eval()(images), module.eval()(images))


def test_precision_auto_follows_the_hardware_and_unknown_ones_are_refused(monkeypatch):
    from tuningfork.models import runtime

    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: True)
    assert runtime.resolve_precision("auto", "cpu") == "bf16-mixed"
    monkeypatch.setattr(runtime, "cpu_bf16_supported", lambda: False)
    assert runtime.resolve_precision("auto", "cpu") == "32-true"
    assert runtime.resolve_precision("32-true", "cpu") == "32-true"
    with pytest.raises(ConfigError, match="unknown precision"):
        runtime.resolve_precision("fp8", "cpu")


def test_a_bfloat16_trained_network_is_saved_in_float32_and_the_usual_layout(tmp_path):
    from astropy.table import Table

    from tuningfork.data import GalaxyCollection
    from tuningfork.models import load_model
    from tuningfork.training import train

    rng = np.random.default_rng(0)
    images = rng.random((24, 1, 24, 24), dtype=np.float32)
    data = GalaxyCollection.from_arrays(images, Table({"id": [f"g{i}" for i in range(24)],
                                                       "label": ["a", "b"] * 12}))
    result = train(data, tmp_path / "m", image_size=24, epochs=1, batch_size=8, progress=False,
                   precision="bf16-mixed", architecture_options={"widths": (4, 8), "view_features": 8, "hidden": 8})
    assert result.metrics["precision"] == "bf16-mixed"
    for tensor in load_model(result.folder).network.state_dict().values():
        assert tensor.dtype in (torch.float32, torch.int64) and tensor.is_contiguous()
