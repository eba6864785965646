"""Export a model folder's network to ONNX, for ONNX Runtime inference."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch

from ..data.writers import atomic_path
from ..errors import ModelError
from .folder import load_model


def export_onnx(folder: str | Path, path: str | Path) -> Path:
    """Write the network of a model folder as an ONNX graph with a dynamic batch axis.

    The graph maps ``images`` (batch, bands, H, W) float32, preprocessed as
    the folder's config says, to raw ``logits``; temperature and the vote
    normalisation are applied afterwards as in ``predict``.

    Parameters
    ----------
    folder : str or Path
        Model folder.
    path : str or Path
        Output ``.onnx`` file (written atomically).

    Returns
    -------
    Path
        The written file.
    """
    model = load_model(folder)
    config = model.config
    example = torch.zeros(1, config.in_channels, config.image_size, config.image_size)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        # The TorchScript exporter warns about its own deprecation; the
        # newer exporter needs onnxscript, which is not a dependency.
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                model.network, (example,), str(tmp), dynamo=False, input_names=["images"],
                output_names=["logits"], dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
            )
        except (RuntimeError, torch.onnx.errors.OnnxExporterError) as error:
            problem = str(error).splitlines()[0][:160]
            raise ModelError(f"{folder}: the {config.architecture} network cannot be exported to ONNX ({problem})") from error
    return Path(path)
