"""Rendering throughput of ``tuningfork.simulation.simulate``.

Measures galaxies per second with 1 and 2 worker processes, for 64-pixel
stamps in one band (r) and in three bands (g, r, i), all eight classes in equal
shares, Moffat PSF and Gaussian noise; and from the fastest two-worker run
estimates the time to render 10,000 stamps.  The calling process is warmed up
first, so one-worker runs reuse GalSim's Sersic tables; two-worker runs
include starting the processes and building those tables in each, as a user
would pay them.

Writes ``benchmarks/results/simulation.json`` and ``benchmarks/results/simulation.md``.

Usage: ``python benchmarks/bench_simulation.py [--n 2000] [--quick]``
(``--quick`` renders 64 stamps per configuration, to check that the script works.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import galsim
import numpy as np

from tuningfork.data.writers import atomic_path
from tuningfork.simulation import simulate

RESULTS = Path(__file__).resolve().parent / "results"
TARGET_COUNT = 10_000


def time_simulation(n: int, size: int, bands: tuple[str, ...], workers: int) -> dict:
    """Render ``n`` stamps once and return the timing record."""
    start = time.perf_counter()
    sample = simulate(n, size=size, bands=bands, workers=workers, seed=0)
    seconds = time.perf_counter() - start
    if not np.all(np.isfinite(sample.images)):
        raise RuntimeError("simulate() produced non-finite pixels")
    return {
        "n": n,
        "size": size,
        "bands": ",".join(bands),
        "workers": workers,
        "seconds": round(seconds, 3),
        "galaxies_per_s": round(n / seconds, 1),
    }


def markdown(records: list[dict], estimate_s: float, environment: dict) -> str:
    """The results as a markdown table with the 10,000-stamp estimate."""
    lines = [
        "# Simulation throughput",
        "",
        (
            f"Machine: {environment['cpus']} CPUs, load average {environment['load_average']} at start "
            "(shared machine: timings are upper bounds on the time an idle machine needs). "
            f"GalSim {environment['galsim']}, Python {environment['python']}."
        ),
        "",
        "| stamps | size (px) | bands | workers | seconds | galaxies/s |",
        "|---:|---:|---|---:|---:|---:|",
    ]
    lines += [
        f"| {r['n']} | {r['size']} | {r['bands']} | {r['workers']} | {r['seconds']} | {r['galaxies_per_s']} |"
        for r in records
    ]
    lines += [
        "",
        f"Estimated time for {TARGET_COUNT:,} one-band 64 px stamps on 2 workers: {estimate_s:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="stamps per configuration")
    parser.add_argument("--size", type=int, default=64, help="stamp side (pixels)")
    parser.add_argument("--quick", action="store_true", help="64 stamps per configuration")
    parser.add_argument("--out", type=Path, default=RESULTS, help="folder for simulation.json/.md")
    args = parser.parse_args()
    n = 64 if args.quick else args.n

    environment = {
        "cpus": os.cpu_count(),
        "load_average": [round(value, 2) for value in os.getloadavg()],
        "galsim": galsim.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    simulate(64, size=args.size, workers=1, seed=1)  # warm-up: GalSim's lookup tables
    records = []
    for bands in (("r",), ("g", "r", "i")):
        for workers in (1, 2):
            record = time_simulation(n, args.size, bands, workers)
            print(record, flush=True)
            records.append(record)
    two_worker_one_band = next(r for r in records if r["workers"] == 2 and r["bands"] == "r")
    estimate_s = TARGET_COUNT / two_worker_one_band["galaxies_per_s"]

    result = {
        "environment": environment,
        "records": records,
        "estimated_seconds_10000_stamps": round(estimate_s, 1),
    }
    with atomic_path(args.out / "simulation.json") as tmp:
        tmp.write_text(json.dumps(result, indent=2) + "\n")
    with atomic_path(args.out / "simulation.md") as tmp:
        tmp.write_text(markdown(records, estimate_s, environment))
    print(
        f"estimated {estimate_s:.0f} s for {TARGET_COUNT} stamps; wrote {args.out}/simulation.json and .md"
    )


if __name__ == "__main__":
    main()
