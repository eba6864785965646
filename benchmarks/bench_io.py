"""Read-and-preprocess throughput and memory of the data model.

Measures, on files this script generates itself:

* images/s for JPEG, FITS and HDF5 inputs at 64 and 128 px, read through
  ``GalaxyCollection`` and preprocessed with the default ``Preprocessor``
  (background, linear stretch, per-band normalisation), with one process and
  with two processes each iterating one shard;
* peak resident memory while iterating over 10^3, 10^4 and 10^5 cutouts of an
  HDF5 stack, each count in a fresh process, to show that memory stays flat
  as the count grows (the whole 10^5 stack would take 1.6 GB if loaded).

Writes ``benchmarks/results/io.json`` and ``benchmarks/results/io.md``.

Usage: ``python benchmarks/bench_io.py [--quick]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def galaxy_like_stack(count: int, size: int, bands: int, seed: int = 0) -> np.ndarray:
    """Elliptical Gaussian blobs on a noisy sky: cheap stand-ins for cutouts."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:size, :size] - (size - 1) / 2
    stack = np.empty((count, bands, size, size), dtype=np.float32)
    for index in range(count):
        sigma = rng.uniform(2, size / 8)
        q = rng.uniform(0.3, 1.0)
        angle = rng.uniform(0, np.pi)
        xr = x * np.cos(angle) + y * np.sin(angle)
        yr = -x * np.sin(angle) + y * np.cos(angle)
        blob = np.exp(-0.5 * (xr**2 + (yr / q) ** 2) / sigma**2)
        for band in range(bands):
            stack[index, band] = 100 * blob * (1 + 0.3 * band) + rng.normal(10, 1, (size, size))
    return stack


def write_inputs(folder: Path, kind: str, count: int, size: int) -> Path:
    """Write ``count`` cutouts of one kind and return what GalaxyCollection opens."""
    from astropy.io import fits
    from PIL import Image

    stack = galaxy_like_stack(min(count, 256), size, bands=3 if kind == "jpeg" else 1)
    if kind == "hdf5":
        import h5py

        path = folder / f"stack_{size}_{count}.h5"
        with h5py.File(path, "w") as handle:
            dataset = handle.create_dataset("images", shape=(count, size, size), dtype="f4",
                                            chunks=(min(count, 256), size, size))
            for start in range(0, count, len(stack)):
                stop = min(start + len(stack), count)
                dataset[start:stop] = stack[: stop - start, 0]
            handle.create_dataset("labels", data=np.arange(count) % 5)
        return path
    images = folder / f"{kind}_{size}"
    images.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        image = stack[index % len(stack)]
        if kind == "fits":
            fits.PrimaryHDU(image[0]).writeto(images / f"g{index:06d}.fits", overwrite=True)
        else:
            scaled = np.clip(image / image.max() * 255, 0, 255).astype(np.uint8)
            Image.fromarray(np.moveaxis(scaled, 0, -1)).save(images / f"g{index:06d}.jpg", quality=90)
    return images


def _iterate(collection, size: int) -> int:
    from tuningfork.preprocessing import PreprocessConfig, Preprocessor

    preprocess = Preprocessor(PreprocessConfig(output_size=size))
    seen = 0
    for batch in collection.iter_batches(batch_size=128, preprocess=preprocess):
        seen += len(batch.ids)
    return seen


def throughput(source: Path, size: int, workers: int) -> float:
    """Images per second read and preprocessed, with ``workers`` processes on shards."""
    from tuningfork.data import GalaxyCollection

    collection = GalaxyCollection.open(source)
    # Import and first-call costs are paid once per process, not per image.
    _iterate(collection.subset(range(8)), size)
    start = time.perf_counter()
    if workers == 1:
        seen = _iterate(collection, size)
    else:
        with ProcessPoolExecutor(workers) as pool:
            seen = sum(pool.map(_iterate, collection.shards(workers), [size] * workers))
    return seen / (time.perf_counter() - start)


def peak_memory_child(source: str, size: int) -> None:
    """Iterate over a stack and print the process's peak RSS (MiB) as JSON."""
    from tuningfork.data import GalaxyCollection

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    collection = GalaxyCollection.open(source)
    count = _iterate(collection, size)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"count": count, "peak_rss_mib": peak, "baseline_rss_mib": baseline}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        peak_memory_child(args.child[0], int(args.child[1]))
        return

    file_count = 200 if args.quick else 2000
    memory_counts = [1000, 3000] if args.quick else [1_000, 10_000, 100_000]
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                           "processor": platform.processor(),
                           "load_average_at_start": os.getloadavg()[0]},
               "throughput": [], "memory": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for kind in ("jpeg", "fits", "hdf5"):
            for size in (64, 128):
                source = write_inputs(folder, kind, file_count, size)
                for workers in (1, 2):
                    rate = throughput(source, size, workers)
                    results["throughput"].append({"format": kind, "size_px": size, "workers": workers,
                                                  "images": file_count, "images_per_s": round(rate, 1)})
                    print(f"{kind:5s} {size:4d}px workers={workers}: {rate:8.1f} images/s", flush=True)
        for count in memory_counts:
            source = write_inputs(folder, "hdf5", count, 64)
            output = subprocess.run([sys.executable, __file__, "--child", str(source), "64"],
                                    check=True, capture_output=True, text=True).stdout
            row = json.loads(output.strip().splitlines()[-1])
            row["stack_mib_if_loaded"] = round(count * 64 * 64 * 4 / 2**20, 1)
            results["memory"].append(row)
            print(f"memory {count:7d} cutouts: peak RSS {row['peak_rss_mib']:.0f} MiB", flush=True)

    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "io_quick" if args.quick else "io"
    (RESULTS / f"{name}.json").write_text(json.dumps(results, indent=2))
    lines = ["# Read-and-preprocess throughput", "",
             (f"{results['machine']['cpus']} CPUs (1-min load average {results['machine']['load_average_at_start']:.1f} "
             "at start; a load near the CPU count means other jobs shared the machine), "
             f"Python {results['machine']['python']}; "
             f"{file_count} files per format; default PreprocessConfig (sigma-clipped background, linear stretch, per-band percentile minmax), stacks preprocessed a batch at a time."), "",
             "| format | size (px) | processes | images/s |", "|---|---|---|---|"]
    lines += [f"| {r['format']} | {r['size_px']} | {r['workers']} | {r['images_per_s']} |"
              for r in results["throughput"]]
    lines += ["", "# Peak memory while iterating an HDF5 stack (64 px, batches of 128)", "",
              "| cutouts | stack if loaded (MiB) | peak RSS (MiB) |", "|---|---|---|"]
    lines += [f"| {r['count']} | {r['stack_mib_if_loaded']} | {r['peak_rss_mib']:.0f} |"
              for r in results["memory"]]
    (RESULTS / f"{name}.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
