"""Supervised training: Lightning loops, losses, Galaxy Zoo trees, calibration and triage.

:func:`train` writes a model folder, :func:`predict` applies it to new
images (with triage into confident predictions and an expert queue), and
:func:`evaluate` writes metrics and figures.

:func:`train` and :class:`TrainResult` (module :mod:`.fit`) are imported on
first use, so that a process that only predicts (``predict``, a catalog
worker) never imports Lightning.
"""

from .evaluate import evaluate
from .predict import predict
from .trees import GZ2, GZ_DECALS, TREES, DecisionTree, get_tree

__all__ = ["GZ2", "GZ_DECALS", "TREES", "DecisionTree", "TrainResult", "evaluate", "get_tree", "predict", "train"]


def __getattr__(name: str):
    if name not in ("train", "TrainResult"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from . import fit

    return getattr(fit, name)


def __dir__() -> list[str]:
    return sorted(__all__)
