"""Supervised training: Lightning loops, losses, Galaxy Zoo trees, calibration and triage.

:func:`train` writes a model folder, :func:`predict` applies it to new
images (with triage into confident predictions and an expert queue), and
:func:`evaluate` writes metrics and figures.
"""

from .evaluate import evaluate
from .predict import predict
from .train import TrainResult, train
from .trees import GZ2, GZ_DECALS, TREES, DecisionTree, get_tree

__all__ = ["GZ2", "GZ_DECALS", "TREES", "DecisionTree", "TrainResult", "evaluate", "get_tree", "predict", "train"]
