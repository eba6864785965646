"""The one Lightning setup (batched inference is in :mod:`tuningfork.models.inference`).

Every method trains with the Trainer of :func:`make_trainer`: quiet (no
progress bar, model summary, logger or Lightning INFO messages unless asked),
no checkpoint files (:class:`BestWeights` keeps the best epoch in memory),
deterministic algorithms where PyTorch has them, and no sanity validation.
:class:`CpuBudget` bounds training by CPU time.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from ..errors import ConfigError


class CpuBudget(L.Callback):
    """Stop training when the process has used a given CPU time.

    CPU time (``time.process_time``: all threads of this process) rather
    than wall time makes budgets comparable on a shared machine.  A
    learning-rate schedule can read :meth:`fraction_used` (find the callback
    with :func:`find_callback`), so training anneals properly however many
    epochs the budget allows.

    Parameters
    ----------
    seconds : float
        The budget, in CPU seconds.
    """

    def __init__(self, seconds: float):
        self.seconds = float(seconds)
        self._start: float | None = None
        #: Whether this callback ended training.
        self.stopped = False

    def on_fit_start(self, trainer, pl_module) -> None:
        self._start = time.process_time()

    def used(self) -> float:
        """CPU seconds used since training started."""
        return 0.0 if self._start is None else time.process_time() - self._start

    def fraction_used(self) -> float:
        """Share of the budget used so far."""
        return self.used() / self.seconds

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.fraction_used() >= 1.0:
            trainer.should_stop = True
            self.stopped = True


class BestWeights(L.Callback):
    """Per-epoch losses and, in memory, the weights of the best validation.

    Held in memory rather than in checkpoint files so that training writes
    nothing but the final model folder.

    Parameters
    ----------
    monitor : str
        Metric logged in validation that ranks the epochs.
    mode : {"min", "max"}
        Whether a lower or a higher ``monitor`` is better.

    Attributes
    ----------
    train_losses : list of float
        Mean ``train_loss`` of every training epoch (when the module logs it).
    scores : list of float
        ``monitor`` after every validation.
    best_state : dict or None
        CPU copy of the module's state dict at the best score; it stays None
        without validation, and then :meth:`restore` keeps the last weights.
    """

    def __init__(self, monitor: str = "val_loss", mode: str = "min"):
        if mode not in ("min", "max"):
            raise ConfigError(f"BestWeights mode must be 'min' or 'max', got {mode!r}")
        self.monitor = monitor
        self.mode = mode
        self.train_losses: list[float] = []
        self.scores: list[float] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self._best = math.inf if mode == "min" else -math.inf

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        loss = trainer.callback_metrics.get("train_loss")
        if loss is not None:
            self.train_losses.append(float(loss))

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking:
            return
        score = float(trainer.callback_metrics[self.monitor])
        self.scores.append(score)
        # A NaN score ranks last, so that any finite one later replaces it.
        ranked = score if not math.isnan(score) else (math.inf if self.mode == "min" else -math.inf)
        better = ranked < self._best if self.mode == "min" else ranked > self._best
        if self.best_state is None or better:
            self._best = ranked
            self.best_state = {name: value.detach().cpu().clone() for name, value in pl_module.state_dict().items()}

    def restore(self, module: torch.nn.Module) -> None:
        """Load the best weights into ``module`` (left as it is without validation).

        Parameters
        ----------
        module : torch.nn.Module
            The LightningModule that was trained.
        """
        if self.best_state is not None:
            module.load_state_dict(self.best_state)


def find_callback(trainer: L.Trainer, kind: type[L.Callback]) -> L.Callback | None:
    """The trainer's first callback of a type, or None.

    Parameters
    ----------
    trainer : lightning.Trainer
    kind : type
        Callback class, e.g. :class:`CpuBudget`.

    Returns
    -------
    lightning.Callback or None
    """
    return next((callback for callback in trainer.callbacks if isinstance(callback, kind)), None)


def training_progress(trainer: L.Trainer) -> Callable[[int], float]:
    """Share of training done at an optimiser step, for learning-rate schedules.

    Steps over the trainer's estimate of all steps, or the share of its
    :class:`CpuBudget` spent when that is further along, so that a schedule
    anneals to its end whether the epochs or the budget run out first.

    Parameters
    ----------
    trainer : lightning.Trainer
        The trainer fitting the module (call from ``configure_optimizers``).

    Returns
    -------
    callable
        ``progress(step) -> float`` in [0, 1].
    """
    total = max(int(trainer.estimated_stepping_batches), 1)
    budget = find_callback(trainer, CpuBudget)

    def progress(step: int) -> float:
        done = step / total
        if budget is not None:
            done = max(done, budget.fraction_used())
        return min(done, 1.0)

    return progress


def budget_reached(trainer: L.Trainer) -> bool:
    """Whether the trainer's :class:`CpuBudget` (if any) ended training.

    Parameters
    ----------
    trainer : lightning.Trainer

    Returns
    -------
    bool
    """
    budget = find_callback(trainer, CpuBudget)
    return budget is not None and budget.stopped


#: Lightning's own deprecation, raised inside Lightning by every fit with
#: recent PyTorch; nothing a user of tuningfork can act on.
_LIGHTNING_DEPRECATIONS = (r"`isinstance\(treespec, LeafSpec\)` is deprecated",)


@contextlib.contextmanager
def _quiet_lightning() -> Iterator[None]:
    # Lightning announces devices ("GPU available: False"), advertises its
    # cloud products ("Tip: ...") and says why fit stopped, all at INFO level;
    # tuningfork reports what matters itself, so only warnings get through.
    loggers = [logging.getLogger(name) for name in ("lightning.pytorch", "lightning.fabric")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            for message in _LIGHTNING_DEPRECATIONS:
                warnings.filterwarnings("ignore", message=message, category=FutureWarning)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class _Trainer(L.Trainer):
    """A Lightning Trainer whose set-up and ``fit`` keep Lightning's INFO messages back."""

    def __init__(self, *args, **kwargs):
        with _quiet_lightning():
            super().__init__(*args, **kwargs)

    def fit(self, *args, **kwargs) -> None:
        with _quiet_lightning():
            super().fit(*args, **kwargs)


#: Training precisions :func:`make_trainer` accepts besides "auto".
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed")


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bfloat16 matrix products natively (AVX512-BF16 or AMX).

    oneDNN reports it; without the hardware, bfloat16 is emulated and
    slower than float32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(precision: str, accelerator: str) -> str:
    """The Lightning precision that ``"auto"`` means on this machine.

    ``"auto"`` is bfloat16 mixed precision where the hardware has it (an
    AMX CPU: the default ``rotinv`` trains 2.8x faster per CPU-second with
    channels-last layout, benchmarks/results/gzc.md; a GPU with bfloat16)
    and float32 otherwise.  Weights stay float32 either way, so a model
    trained on any device loads and predicts anywhere.

    Parameters
    ----------
    precision : str
        ``"auto"`` or one of :data:`PRECISIONS`.
    accelerator : str
        The Lightning accelerator asked for.

    Returns
    -------
    str
    """
    if precision != "auto":
        if precision not in PRECISIONS:
            raise ConfigError(f"unknown precision '{precision}' (choose from auto, {', '.join(PRECISIONS)})")
        return precision
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if cpu_bf16_supported() else "32-true"


def make_trainer(
    *,
    max_epochs: int,
    accelerator: str = "auto",
    precision: str = "32-true",
    devices: int | str = 1,
    callbacks: Sequence[L.Callback] = (),
    budget_s: float | None = None,
    gradient_clip: float | None = None,
    progress: bool = False,
    deterministic: bool | str = "warn",
) -> L.Trainer:
    """The Lightning Trainer every tuningfork method trains with.

    Parameters
    ----------
    max_epochs : int
        Passes over the training data at most.
    accelerator : str
        Lightning accelerator (``"auto"`` uses a GPU if present, ``"cpu"``,
        ``"gpu"``).
    devices : int or str
        Devices to train on; more than one trains data-parallel, with every
        process running the caller's code.
    callbacks : sequence of lightning.Callback
        E.g. :class:`BestWeights`, early stopping.  A ``ModelCheckpoint``
        among them turns Lightning's checkpointing on; otherwise no
        checkpoint file is written.
    budget_s : float, optional
        CPU-time budget in seconds: a :class:`CpuBudget` callback is added
        that stops training when it is spent.
    gradient_clip : float, optional
        Clip gradients to this global norm.
    progress : bool
        Show the progress bar (Lightning's INFO messages and its known
        deprecation warning are never shown).
    precision : str
        Lightning precision, or ``"auto"`` (:func:`resolve_precision`).
    deterministic : bool or "warn"
        Passed to :class:`lightning.Trainer`: ``"warn"`` uses deterministic
        algorithms where PyTorch has them and warns where it has none, so
        that a seed gives the same model on the same machine.

    Returns
    -------
    lightning.Trainer
        No logger, no model summary, no sanity validation.
    """
    callbacks = list(callbacks)
    if budget_s:
        callbacks.append(CpuBudget(budget_s))
    return _Trainer(
        max_epochs=max_epochs,
        accelerator=accelerator,
        devices=devices,
        precision=resolve_precision(precision, accelerator),
        callbacks=callbacks,
        logger=False,
        enable_checkpointing=any(isinstance(callback, ModelCheckpoint) for callback in callbacks),
        enable_progress_bar=progress,
        enable_model_summary=False,
        deterministic=deterministic,
        gradient_clip_val=gradient_clip,
        # Validation before training only repeats what the first epoch checks.
        num_sanity_val_steps=0,
    )
