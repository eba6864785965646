"""Export a model folder's network to ONNX, and run it with ONNX Runtime."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

import torch

from ..data.writers import atomic_path
from ..errors import ModelError
from .folder import LoadedModel, load_model


def _write_onnx(model: LoadedModel, path: Path) -> Path:
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
            raise ModelError(f"{model.folder}: the {config.architecture} network cannot be exported to ONNX ({problem})") from error
    return Path(path)


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
    return _write_onnx(load_model(folder), Path(path))


class OnnxRuntimeNetwork:
    """A loaded model's network, run by ONNX Runtime on the CPU.

    Called like the torch network, on (batch, bands, H, W) float32 tensors,
    returning logits.  ONNX Runtime fuses the layers of the default
    ``rotinv`` network and runs it about twice as fast as eager PyTorch on
    a CPU (1,290 vs 729 images/s on 2 cores, benchmarks/results/inference.md).

    Parameters
    ----------
    model : LoadedModel
        The model whose network is exported (to a temporary file, removed
        once ONNX Runtime has read it).
    threads : int, optional
        Intra-op threads; by default as many as torch uses.
    """

    def __init__(self, model: LoadedModel, threads: int | None = None):
        import onnxruntime

        self.network = model.network
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        # Idle threads that spin between batches burn CPU time that reading
        # and preprocessing (on the main thread) need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        with tempfile.TemporaryDirectory(prefix="tuningfork-onnx-") as scratch:
            graph = _write_onnx(model, Path(scratch) / "model.onnx")
            self.session = onnxruntime.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {"images": images.contiguous().numpy()})
        return torch.from_numpy(logits)
