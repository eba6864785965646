"""Inference speed of the supervised architectures at 64 px (issue 3's speed goal).

Speed does not depend on trained weights, so each architecture is built with
random weights, saved as a model folder, and timed three ways with
``--threads`` torch threads (2 by default: "2 cores"):

* ``network``: the network alone on a batch of 256 preprocessed images, in
  the layout :func:`tuningfork.models.inference.network_logits` uses;
* ``onnx``: the same through ONNX Runtime (``tuningfork.models.export``);
* ``predict``: :func:`tuningfork.training.predict` end to end on an
  in-memory collection of 64-pixel g, r, i images (preprocessing, network,
  calibration, triage and the output table; no file reading), with the
  network run by PyTorch and by ONNX Runtime (``engine="onnx"``, export
  included); the faster of two runs each.

Writes ``benchmarks/results/inference.json`` and ``inference.md``.  Run it on
a quiet machine: other jobs on the same cores lower every number.

    python benchmarks/bench_inference.py
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from _common import write_report
from astropy.table import Table

from tuningfork.data import GalaxyCollection
from tuningfork.models import ModelConfig, create_model, save_model
from tuningfork.models.export import export_onnx
from tuningfork.models.inference import to_inference_layout
from tuningfork.preprocessing import PreprocessConfig
from tuningfork.training import predict

RESULTS = Path(__file__).resolve().parent / "results"
IMAGE_SIZE = 64
BATCH = 256
#: Timed variants: label -> (architecture, options).
VARIANTS = {
    "rotinv (default, c4)": ("rotinv", {}),
    "rotinv d4": ("rotinv", {"group": "d4"}),
    "hybrid": ("hybrid", {}),
    "convnext_atto": ("convnext_atto", {}),
}


def machine_info() -> dict:
    """CPU count, 1-minute load average now, platform and torch version, for a results file."""
    return {"cpus": os.cpu_count(), "load_average": round(os.getloadavg()[0], 2),
            "platform": platform.platform(), "torch": torch.__version__}


def images_per_second(run, batches: int) -> float:
    """Images per second of ``run()`` (one batch of BATCH images), after a warm-up call."""
    run()
    start = time.perf_counter()
    for _ in range(batches):
        run()
    return batches * BATCH / (time.perf_counter() - start)


def throughput(network: torch.nn.Module, channels: int, batches: int, onnx_path: Path | None = None) -> dict:
    """Images per second of a network at 64 px in predict()'s layout, and through ONNX Runtime if given.

    Returns
    -------
    dict
        ``eager_images_per_s`` and ``onnx_images_per_s`` (None without ``onnx_path``).
    """
    batch = torch.randn(BATCH, channels, IMAGE_SIZE, IMAGE_SIZE).contiguous(memory_format=torch.channels_last)
    to_inference_layout(network)
    with torch.inference_mode():
        speeds = {"eager_images_per_s": images_per_second(lambda: network(batch), batches), "onnx_images_per_s": None}
    if onnx_path is not None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        feed = {"images": batch.contiguous().numpy()}
        speeds["onnx_images_per_s"] = images_per_second(lambda: session.run(None, feed), batches)
    return speeds


def time_variant(architecture: str, options: dict, folder: Path, batches: int) -> dict:
    """Network, ONNX Runtime and end-to-end predict throughput of one architecture."""
    network = create_model(architecture, 2, in_channels=3, image_size=IMAGE_SIZE, **options)
    preprocess = PreprocessConfig(output_size=IMAGE_SIZE)
    config = ModelConfig(architecture=architecture, num_outputs=2, in_channels=3, image_size=IMAGE_SIZE,
                         preprocessing=preprocess.to_dict(),
                         target={"kind": "classes", "column": "label", "class_names": ["a", "b"]},
                         architecture_options=options)
    save_model(folder, network, config)
    speeds = throughput(network, 3, batches, export_onnx(folder, folder / "model.onnx"))
    rng = np.random.default_rng(0)
    stamps = rng.normal(1.0, 0.1, (BATCH * batches, 3, IMAGE_SIZE, IMAGE_SIZE)).astype(np.float32)
    collection = GalaxyCollection.from_arrays(stamps, Table({"id": [f"g{i}" for i in range(len(stamps))]}))

    def end_to_end(engine: str) -> float:
        start = time.perf_counter()
        predict(folder, collection, engine=engine)
        return len(stamps) / (time.perf_counter() - start)

    return speeds | {"predict_images_per_s": max(end_to_end("torch") for _ in range(2)),
                     "predict_onnx_images_per_s": max(end_to_end("onnx") for _ in range(2)),
                     "parameters": sum(parameter.numel() for parameter in network.parameters())}


def markdown(report: dict) -> str:
    """The results as a markdown table."""
    machine = report["machine"]
    lines = [
        "# Inference speed at 64 px",
        "",
        (f"{report['threads']} torch threads, batch {BATCH}, random weights (speed does not depend on them); "
         f"machine: {machine['cpus']} CPUs, load average {machine['load_average']} at start, torch {machine['torch']}."),
        "",
        ("| model | parameters | network images/s | ONNX Runtime images/s | predict() images/s "
         "| predict(engine=\"onnx\") images/s |"),
        "|---|---|---|---|---|---|",
    ]
    for name, row in report["models"].items():
        lines.append(f"| {name} | {row['parameters']:,} | {row['eager_images_per_s']:.0f} | "
                     f"{row['onnx_images_per_s']:.0f} | {row['predict_images_per_s']:.0f} | "
                     f"{row['predict_onnx_images_per_s']:.0f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch (and ONNX Runtime) threads")
    parser.add_argument("--batches", type=int, default=10, help="timed batches of 256 images")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    report = {"threads": args.threads,
              "machine": machine_info(),
              "models": {}}
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as scratch:
        for index, (name, (architecture, options)) in enumerate(VARIANTS.items()):
            report["models"][name] = time_variant(architecture, options, Path(scratch) / str(index), args.batches)
            print(name, report["models"][name], flush=True)
    write_report(RESULTS, "inference", report, markdown(report))


if __name__ == "__main__":
    main()
