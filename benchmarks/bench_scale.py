"""The morphology catalog at survey scale (issue 14): throughput, memory, kill tests, end-to-end speed.

On the Galaxy Zoo challenge JPEGs of ``../shared/data/gzc`` (24,909), listed
repeatedly (ids ``<GalaxyID>-<repeat>``) to reach the larger sizes:

* ``throughput``: ``tuningfork catalog`` (classification stage) with 1 and
  with 2 workers on the same 10^5 galaxies, one run after the other; the
  target is a speed-up of at least 1.8.  Reported over the whole command
  (start-up included: imports, cluster, model loading), and at steady state, from the write times of the Parquet parts after each
  worker's first one.  ``--only throughput`` reruns this one alone.
* ``client``: what the client alone costs per input row, on 10^4 and 10^5
  rows: CPU and wall seconds of ``GalaxyCollection.open`` (with and without
  the check that each file exists), the memory the
  opened collection holds, and the peak memory and time of finishing a
  catalog whose shards are all written (check, merge, write), in a fresh
  process (``--only client``).
* ``merge``: the client's peak memory growth while merging 10^5 and 10^6
  rows of parts (copies of one real part) into ``catalog.parquet``, in a
  fresh process (``--only merge``); the target is flat.
* ``memory``: peak resident memory of each worker (``VmHWM`` read on the
  workers after the run) at 10^4 and 10^5 galaxies; the target is flat.
* ``kill``: SIGKILL of one worker (of a two-worker cluster reached by
  ``--scheduler``, whose nanny restarts it), and separately of the client
  (``tuningfork catalog`` in its own process group, with its local cluster),
  in the middle of a run; the rerun's catalog is compared with the input:
  lost and duplicated rows (target 0 and 0).
* ``end_to_end``: images per CPU-second per worker, start-up included, of
  ``tuningfork catalog --workers 1`` on full-size 424-pixel JPEGs, against
  ``tuningfork predict`` on the same files (target >= 250 per CPU-second;
  on 1,000 rows the median of three runs from scratch),
  with the largest difference of their confidences; each with the network
  run by torch and by ONNX Runtime (``--engine onnx``).  The gzc JPEGs are 128
  pixels (central 256 of the 424-pixel originals, resized), so the 424-pixel
  files are made here by upscaling a sample with PIL (bicubic) into a
  temporary folder: the decode and preprocessing cost is that of a 424-pixel
  JPEG, not its content.
* ``lightning``: the classification stage against a plain Lightning
  ``Trainer.predict`` over a torch ``DataLoader`` (JPEG decode + the model's
  preprocessing per item, as Zoobot's ``predict_on_catalog`` runs), same
  model, same 424-pixel files, one process, start-up included (target
  >= 1.5x images/s).
* ``stages``: CPU-seconds per galaxy of each catalog stage alone in one
  shard in this process (classification, embeddings, clustering assignment,
  morphometry on native 128 px and on 424 px stamps), and of the one-off
  clustering fit: the numbers behind the 10^8 projection of docs/SCALING.md.

The classifier is the default architecture with random weights (speed does
not depend on the weights), 3 bands, 64 pixels, the default preprocessing.
CPU-seconds count the command and every worker process it started and
waited for (``RUSAGE_CHILDREN``).  The load average (``uptime``) is recorded
before and after: other jobs on the same cores lower every number, so run it
on a quiet machine:

    python benchmarks/bench_scale.py            # the sizes of the issue (tens of minutes)
    python benchmarks/bench_scale.py --quick    # a few hundred galaxies, to check the script

Writes ``benchmarks/results/scale.json`` and ``scale.md`` (``scale_quick.*``
with ``--quick``).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from _common import write_report
from astropy.table import Table

from tuningfork.pipeline.shard import PARTS

RESULTS = Path(__file__).resolve().parent / "results"
GZC = Path(__file__).resolve().parents[2] / "shared" / "data" / "gzc"
IMAGE_SIZE = 64
FULL = {"throughput": 100_000, "memory": (10_000, 100_000), "merge": (100_000, 1_000_000), "kill": 5_000,
        "end_to_end": 1_000,
        "end_to_end_large": 10_000, "morphometry": (100, 5), "shard": 1000}
QUICK = {"throughput": 400, "memory": (300, 600), "merge": (2000, 4000), "kill": 300, "end_to_end": 120, "end_to_end_large": 240,
         "morphometry": (5, 2), "shard": 50}


def uptime() -> str:
    """The ``uptime`` line (load averages), for the report."""
    return subprocess.run(["uptime"], check=False, capture_output=True, text=True).stdout.strip()


def save_classifier(folder: Path) -> Path:
    """The default classifier with random weights, as a model folder with its ONNX graph (as ``train`` writes it)."""
    from tuningfork.models import ModelConfig, create_model, save_model
    from tuningfork.models.export import export_onnx
    from tuningfork.preprocessing import PreprocessConfig

    network = create_model("rotinv", 5, in_channels=3, image_size=IMAGE_SIZE)
    config = ModelConfig(architecture="rotinv", num_outputs=5, in_channels=3, image_size=IMAGE_SIZE,
                         preprocessing=PreprocessConfig(output_size=IMAGE_SIZE).to_dict(),
                         target={"kind": "classes", "column": "label", "class_names": list("abcde")})
    save_model(folder, network, config)
    export_onnx(folder)
    return folder


def repeated_catalog(path: Path, count: int, files: list[Path] | None = None) -> Path:
    """A CSV of ``count`` rows cycling over the gzc images (or ``files``), with unique ids."""
    files = files or sorted((GZC / "images").glob("*.jpg"))
    rows = np.arange(count)
    table = Table({"id": [f"{files[row % len(files)].stem}-{row // len(files)}" for row in rows],
                   "file": [str(files[row % len(files)]) for row in rows]})
    table.write(path, overwrite=True)
    return path


def cli(*args) -> list[str]:
    return [sys.executable, "-m", "tuningfork.cli", *map(str, args)]


def timed(command: list[str]) -> dict:
    """Wall and CPU seconds (the command and the processes it waited for) of one command."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def lost_and_duplicated(catalog: Path, expected: list[str]) -> dict:
    ids = [str(name) for name in Table.read(catalog)["id"]]
    return {"rows": len(ids), "lost": len(set(expected) - set(ids)), "duplicated": len(ids) - len(set(ids))}


def steady_rate(parts: Path, workers: int, shard: int) -> float:
    """Galaxies per second once every worker has finished its first shard, from the parts' write times.

    The ``workers`` earliest parts mark the end of start-up (imports,
    cluster, model loading, the first shard's warm-up); the galaxies of the
    other parts, over the time from then to the last part, are the rate at
    which a long run proceeds.
    """
    times = sorted(path.stat().st_mtime for path in parts.glob("*.parquet"))
    return (len(times) - workers) * shard / (times[-1] - times[workers - 1])


def throughput(model: Path, work: Path, count: int, shard: int) -> dict:
    data = repeated_catalog(work / "throughput.csv", count)
    result = {"uptime_before": uptime()}
    for workers in (1, 2):
        out = work / f"tp{workers}"
        run = timed(cli("catalog", data, "--out", out, "--classifier", model,
                        "--workers", workers, "--shard-size", shard))
        result[f"{workers}_workers"] = {**run, "images_per_s": round(count / run["wall_s"], 1),
                                        "steady_images_per_s": round(steady_rate(out / PARTS, workers, shard), 1)}
    for key, rate in (("speedup", "images_per_s"), ("steady_speedup", "steady_images_per_s")):
        result[key] = round(result["2_workers"][rate] / result["1_workers"][rate], 2)
    result["uptime_after"] = uptime()
    return result


def throughput_section(model: Path, work: Path, sizes: dict) -> dict:
    return {"galaxies": sizes["throughput"], **throughput(model, work, sizes["throughput"], sizes["shard"])}


CLIENT_SCRIPT = r'''
import gc, json, sys, time
import astropy.io.ascii, astropy.io.misc.parquet, pyarrow.parquet  # the readers' imports are not per row
from tuningfork.data import GalaxyCollection
from tuningfork.models import open_model
from tuningfork.pipeline import build_catalog

def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

def peak_resident_mb():
    # VmHWM: ru_maxrss would keep the RSS of the benchmark this process was forked from.
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024

data, folder, model, shard = sys.argv[1:5]
open_model(model)  # the model folder read before the baseline, as every run reads it
baseline = resident_mb()
cpu, wall = time.process_time(), time.perf_counter()
collection = GalaxyCollection.open(data)
opened = {"cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2)}
gc.collect()
held = resident_mb() - baseline
cpu, wall = time.process_time(), time.perf_counter()
GalaxyCollection.open(data, check_files=False)
unchecked = {"unchecked_cpu_s": round(time.process_time() - cpu, 2),
             "unchecked_wall_s": round(time.perf_counter() - wall, 2)}
cpu, wall = time.process_time(), time.perf_counter()
build_catalog(collection, folder, model, shard_size=int(shard))
print(json.dumps({**opened, **unchecked, "collection_mb": round(held, 1),
                  "finish_cpu_s": round(time.process_time() - cpu, 2), "finish_wall_s": round(time.perf_counter() - wall, 2),
                  "peak_mb": round(peak_resident_mb() - baseline, 1)}))
'''


def client_cost(model: Path, work: Path, counts: tuple[int, ...], shard: int, folders: dict | None = None) -> dict:
    """What the client alone spends, per input row: opening the list, and finishing a catalog whose shards are done.

    Every run pays both serially, before the first shard and after the
    last.  Measured in a fresh process on a catalog folder whose parts are
    all written (``folders``, by count, or built here first), so that the
    run only opens the list, checks it against the folder and merges the
    parts into ``catalog.parquet``.  Memory is resident set growth over the
    process with torch and the model loaded: what the collection holds
    (after opening) and the high-water mark of the whole run.
    """
    from tuningfork.pipeline import build_catalog

    script = work / "client_cost.py"
    script.write_text(CLIENT_SCRIPT)
    rows = {}
    for count in counts:
        data = repeated_catalog(work / f"client{count}.csv", count)
        folder = (folders or {}).get(str(count))
        if folder is None:
            folder = work / f"client{count}"
            build_catalog(data, folder, model, shard_size=shard, workers=2)
        done = subprocess.run([sys.executable, str(script), str(data), str(folder), str(model), str(shard)],
                              check=True,
                              capture_output=True, text=True)
        measured = json.loads(done.stdout.strip().splitlines()[-1])
        rows[str(count)] = {**measured, "collection_bytes_per_row": round(measured["collection_mb"] * 2**20 / count),
                            "peak_bytes_per_row": round(measured["peak_mb"] * 2**20 / count)}
    return {"uptime": uptime(), "rows": rows}


MERGE_SCRIPT = r'''
import glob, json, shutil, sys
from pathlib import Path
import astropy.io.misc.parquet, pyarrow.parquet  # the readers' imports are not per row
from tuningfork.pipeline.catalog import merge_parts, part_path
from tuningfork.pipeline.manifest import Manifest, Shard

def resident_mb():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2**20

def peak_resident_mb():
    # VmHWM: ru_maxrss would keep the RSS of the benchmark this process was forked from.
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:")) / 1024

part, folder, count = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3])
shards = [Shard(f"{index:016x}", index * 1000, (index + 1) * 1000) for index in range(count // 1000)]
for shard in shards:
    target = part_path(folder, shard.shard_id)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        shutil.copy(part, target)
baseline = resident_mb()
merge_parts(folder, Manifest(shards, "copies", count))
print(json.dumps({"peak_growth_mb": round(peak_resident_mb() - baseline, 1)}))
'''


def merge_memory(model: Path, work: Path, counts: tuple[int, ...]) -> dict:
    """Peak memory growth of merging ``count`` rows of parts into the catalog, in a fresh process.

    The parts are copies of one real 1,000-galaxy part (classification
    columns), so that 10^6 rows need no hour of computing: the merge reads
    them as it reads any part.
    """
    from tuningfork.pipeline import build_catalog

    data = repeated_catalog(work / "merge-part.csv", 1000)
    build_catalog(data, work / "merge-part", model, workers=1)
    part = next((work / "merge-part" / PARTS).glob("*.parquet"))
    script = work / "merge_memory.py"
    script.write_text(MERGE_SCRIPT)
    rows = {}
    for count in counts:
        done = subprocess.run([sys.executable, str(script), str(part), str(work / f"merge{count}"), str(count)],
                              check=True, capture_output=True, text=True)
        rows[str(count)] = json.loads(done.stdout.strip().splitlines()[-1])
    return {"uptime": uptime(), "rows": rows}


def _peak_rss_mb() -> float:
    # VmHWM, the peak of this process's own address space: a worker's
    # ru_maxrss keeps the peak of the process it was forked from before
    # exec (the benchmark itself, hundreds of MB), which is not the worker's.
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def peak_memory(model: Path, work: Path, counts: tuple[int, ...], shard: int) -> dict:
    from tuningfork.pipeline import build_catalog
    from tuningfork.pipeline.cluster import open_client

    result = {}
    for count in counts:
        data = repeated_catalog(work / f"memory{count}.csv", count)
        # A fresh cluster per size, so each worker's peak is that of this run; the one `catalog`
        # starts, which also keeps Dask's malloc trim out of the environment later commands inherit.
        with open_client(workers=2) as client:
            start = time.perf_counter()
            build_catalog(data, work / f"memory{count}", model, shard_size=shard, scheduler=client.scheduler.address)
            wall = time.perf_counter() - start
            peaks = client.run(_peak_rss_mb)
        result[str(count)] = {"peak_rss_mb_per_worker": sorted(round(value, 1) for value in peaks.values()),
                              "wall_s": round(wall, 1)}
    return result


def kill_worker(model: Path, work: Path, count: int) -> dict:
    from tuningfork.pipeline import build_catalog
    from tuningfork.pipeline.cluster import open_client

    data = repeated_catalog(work / "kill-worker.csv", count)
    out = work / "kill-worker"
    shard = max(1, count // 100)
    with open_client(workers=2) as client:
        outcome = {}
        thread = threading.Thread(target=lambda: outcome.update(
            result=build_catalog(data, out, model, shard_size=shard, scheduler=client.scheduler.address)))
        thread.start()
        parts = out / "parts"
        while len(list(parts.glob("shard-*.parquet"))) < 20 and thread.is_alive():
            time.sleep(0.05)
        done_at_kill = len(list(parts.glob("shard-*.parquet")))
        os.kill(next(iter(client.run(os.getpid).values())), signal.SIGKILL)
        thread.join()
    expected = [str(name) for name in Table.read(data)["id"]]
    return {"galaxies": count, "shards": -(-count // shard), "shards_done_at_kill": done_at_kill,
            "run_finished_without_rerun": "result" in outcome, **lost_and_duplicated(out / "catalog.parquet", expected)}


def kill_client(model: Path, work: Path, count: int) -> dict:
    data = repeated_catalog(work / "kill-client.csv", count)
    out = work / "kill-client"
    shard = max(1, count // 100)
    command = cli("catalog", data, "--out", out, "--classifier", model, "--workers", 2, "--shard-size", shard)
    # Its own session, so the kill takes its cluster's worker processes along with it.
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = out / "parts"
    while len(list(parts.glob("shard-*.parquet"))) < 30 and process.poll() is None:
        time.sleep(0.05)
    done_at_kill = len(list(parts.glob("shard-*.parquet")))
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    expected = [str(name) for name in Table.read(data)["id"]]
    return {"galaxies": count, "shards_done_at_kill": done_at_kill,
            **lost_and_duplicated(out / "catalog.parquet", expected)}


def full_size_jpegs(folder: Path, count: int) -> list[Path]:
    """``count`` gzc JPEGs upscaled to 424 pixels (bicubic, quality 90), as the challenge's originals are."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted((GZC / "images").glob("*.jpg"))
    picked = [sources[row] for row in np.random.default_rng(0).choice(len(sources), count, replace=False)]
    files = []
    for source in picked:
        target = folder / source.name
        Image.open(source).convert("RGB").resize((424, 424), Image.BICUBIC).save(target, quality=90)
        files.append(target)
    return files


def _remove_outputs(path: Path) -> None:
    """Delete a catalog folder or a predictions file with its sidecars, so that a rerun starts afresh."""
    shutil.rmtree(path, ignore_errors=True)
    for sidecar in path.parent.glob(f"{path.stem}*"):
        sidecar.unlink()


def end_to_end(model: Path, work: Path, files: list[Path], count: int, repeats: int = 1) -> dict:
    """``catalog --workers 1`` and ``predict``, each with both engines, on ``count`` rows of the 424-pixel ``files``.

    Each command runs ``repeats`` times from scratch, one after the other;
    the median run is reported, and every run's CPU-seconds beside it (on a
    shared VM two runs minutes apart differ by up to a tenth).
    """
    data = repeated_catalog(work / f"full-size-{count}.csv", count, files)
    result = {"images": count}
    for engine in ("torch", "onnx"):
        suffix = "" if engine == "torch" else "_onnx"
        outputs = {f"catalog_1_worker{suffix}": work / f"e2e-{count}-{engine}",
                   f"predict{suffix}": work / f"e2e-predict-{count}-{engine}.parquet"}
        runs = {f"catalog_1_worker{suffix}": cli("catalog", data, "--out", outputs[f"catalog_1_worker{suffix}"],
                                                 "--classifier", model, "--workers", 1, "--shard-size", 1000,
                                                 "--engine", engine),
                f"predict{suffix}": cli("predict", model, data, "--out", outputs[f"predict{suffix}"],
                                        "--engine", engine)}
        for name, command in runs.items():
            done = []
            for _ in range(repeats):
                _remove_outputs(outputs[name])
                done.append(timed(command))
            run = sorted(done, key=lambda values: values["cpu_s"])[len(done) // 2]
            result[name] = {**run, "images_per_cpu_s": round(count / run["cpu_s"], 1),
                            "images_per_s": round(count / run["wall_s"], 1),
                            **({"runs_cpu_s": [values["cpu_s"] for values in done]} if repeats > 1 else {})}
    theirs = Table.read(work / f"e2e-predict-{count}-torch.parquet")
    for engine in ("torch", "onnx"):
        ours = Table.read(work / f"e2e-{count}-{engine}" / "catalog.parquet")
        result[f"same_predicted_class_{engine}"] = float(np.mean(np.asarray(ours["predicted_class"])
                                                                 == np.asarray(theirs["predicted_class"])))
        result[f"max_confidence_difference_{engine}"] = float(np.max(np.abs(np.asarray(ours["confidence"])
                                                                            - np.asarray(theirs["confidence"]))))
    return result


def end_to_end_section(model: Path, work: Path, sizes: dict, files: list[Path] | None = None) -> dict:
    """``end_to_end`` and ``lightning`` at both sizes, with the load before and after (``--only end_to_end``)."""
    if files is None:
        files = full_size_jpegs(work / "jpeg424", sizes["end_to_end"])
    report = {"end_to_end_uptime_before": uptime()}
    report["end_to_end"] = end_to_end(model, work, files, len(files), repeats=3)
    report["end_to_end_large"] = end_to_end(model, work, files, sizes["end_to_end_large"])
    report["lightning"] = lightning(model, work, files, report["end_to_end"])
    repeated = [files[row % len(files)] for row in range(sizes["end_to_end_large"])]
    report["lightning_large"] = lightning(model, work, repeated, report["end_to_end_large"])
    report["end_to_end_uptime_after"] = uptime()
    return report


def reduced_decoding(model: Path, files: list[Path]) -> dict:
    """The classification with JPEGs decoded at the reduced resolution the preprocessing allows, against whole."""
    import torch

    from tuningfork.data import GalaxyCollection
    from tuningfork.data.readers import read_image
    from tuningfork.models import load_model
    from tuningfork.models.inference import network_logits
    from tuningfork.preprocessing import PreprocessConfig, Preprocessor

    torch.set_num_threads(1)
    loaded = load_model(model)
    preprocessor = Preprocessor(PreprocessConfig.from_dict(loaded.config.preprocessing))
    data = GalaxyCollection.open(repeated_catalog(Path(files[0]).parent.parent / "reduced.csv", len(files), files))
    started = time.process_time()
    reduced = data.read_images(preprocessor, 256)
    reduced_s = time.process_time() - started
    started = time.process_time()
    whole = np.stack([preprocessor(read_image(file)) for file in files])
    whole_s = time.process_time() - started
    probabilities = [torch.softmax(torch.from_numpy(network_logits(loaded.network, images)), 1).numpy()
                     for images in (reduced, whole)]
    return {
        "decode_scale": preprocessor.decode_scale(424, 424),
        "read_and_preprocess_cpu_s_per_1000": {"reduced": round(1000 * reduced_s / len(files), 2),
                                                "whole": round(1000 * whole_s / len(files), 2)},
        "mean_abs_pixel_difference": float(np.abs(reduced - whole).mean()),
        "same_predicted_class": float(np.mean(probabilities[0].argmax(1) == probabilities[1].argmax(1))),
        "max_probability_difference": float(np.abs(probabilities[0] - probabilities[1]).max()),
    }


#: Galaxies the clustering of the stage costs is fitted on (gzc's native 128 px JPEGs).
FIT_SAMPLE = 500


def stage_costs(model: Path, work: Path, files: list[Path], morphometry_counts: tuple[int, int]) -> dict:
    """CPU-seconds per galaxy of each catalog stage, alone in one shard in this process (one torch thread).

    Each stage's shard reads its galaxies itself (the reading is included, as
    in a run); read + preprocess alone is timed too.  Classification and
    embeddings run on the 424-pixel JPEGs; morphometry (statmorph, the slow
    stage, whose cost grows steeply with the stamp size) on fewer galaxies,
    both on gzc's native 128-pixel JPEGs and on the 424-pixel ones.
    """
    import torch
    from threadpoolctl import threadpool_limits

    from tuningfork.clustering import ClusterConfig, run_cluster_pipeline
    from tuningfork.clustering.pipeline import FITTED_FOLDER
    from tuningfork.data import GalaxyCollection
    from tuningfork.pipeline.shard import ShardPlan, run_shard
    from tuningfork.preprocessing import PreprocessConfig, Preprocessor

    torch.set_num_threads(1)
    native = sorted((GZC / "images").glob("*.jpg"))
    large = GalaxyCollection.open(repeated_catalog(work / "stages424.csv", len(files), files))
    small = GalaxyCollection.open(repeated_catalog(work / "stages128.csv", len(files), native))
    # The clustering is fitted once per catalog (on a sample, as `catalog` does): a global step, timed apart.
    started = time.process_time()
    run_cluster_pipeline(small.subset(slice(0, FIT_SAMPLE)), work / "clusters", ClusterConfig(), overwrite=True)
    fitted = work / "clusters" / FITTED_FOLDER
    fit_cpu_s = time.process_time() - started
    plans = {"classification (default rotinv, 64 px), 424 px JPEGs": (ShardPlan(classifier=str(model)), large,
                                                                      len(files)),
             "classification (default rotinv, 64 px, ONNX Runtime), 424 px JPEGs": (
                 ShardPlan(classifier=str(model), engine="onnx"), large, len(files)),
             "embeddings (morphology descriptors), 424 px JPEGs": (
                 ShardPlan(encoder=("morphology", None, 3, 32)), large, len(files)),
             "clustering assignment (voting, morphology encoder), 424 px JPEGs": (
                 ShardPlan(clustering=str(fitted)), large, len(files)),
             "morphometry (statmorph), 128 px JPEGs": (ShardPlan(morphometry={}), small, morphometry_counts[0]),
             "morphometry (statmorph), 424 px JPEGs": (ShardPlan(morphometry={}), large, morphometry_counts[1])}
    # One thread for BLAS and OpenMP, as a worker has: the clustering fit above
    # leaves their thread pools spinning, which counted in the first timing.
    with threadpool_limits(limits=1):
        large.subset(slice(0, 4)).read_images(Preprocessor(PreprocessConfig(output_size=IMAGE_SIZE)), 256)
        started = time.process_time()
        large.read_images(Preprocessor(PreprocessConfig(output_size=IMAGE_SIZE)), 256)
        costs = {"read + preprocess alone (424 px JPEG, 64 px output)": (time.process_time() - started) / len(files)}
        for index, (name, (plan, data, count)) in enumerate(plans.items()):
            # A first small shard loads the stage's models, outside the timing.
            run_shard(data.subset(slice(0, 4)), f"warm-{index}", work / "stages", plan)
            started = time.process_time()
            run_shard(data.subset(slice(0, count)), f"stage-{index}", work / "stages", plan)
            costs[name] = (time.process_time() - started) / count
    return {"uptime": uptime(), "galaxies": len(files), "morphometry_galaxies": list(morphometry_counts),
            "clustering_fit": {"galaxies": FIT_SAMPLE, "cpu_s": round(fit_cpu_s, 1)},
            "cpu_s_per_galaxy": {name: round(value, 6) for name, value in costs.items()}}


LIGHTNING_SCRIPT = '''
import sys, time
import numpy as np, torch, lightning as L
from PIL import Image
from tuningfork.models import load_model
from tuningfork.preprocessing import PreprocessConfig, Preprocessor
torch.set_num_threads(1)
model = load_model(sys.argv[1])
prep = Preprocessor(PreprocessConfig.from_dict(model.config.preprocessing))
files = [line.strip() for line in open(sys.argv[2]) if line.strip()]

class Images(torch.utils.data.Dataset):
    def __len__(self):
        return len(files)
    def __getitem__(self, i):
        image = np.asarray(Image.open(files[i]).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255
        return torch.from_numpy(prep(image))

class Module(L.LightningModule):
    def __init__(self, network):
        super().__init__()
        self.network = network
    def predict_step(self, batch, index):
        return torch.softmax(self.network(batch), dim=1)

trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False)
out = trainer.predict(Module(model.network.eval()), torch.utils.data.DataLoader(Images(), batch_size=256))
print(sum(len(batch) for batch in out))
'''


def lightning(model: Path, work: Path, files: list[Path], ours: dict) -> dict:
    listing = work / "files.txt"
    listing.write_text("\n".join(map(str, files)))
    script = work / "lightning_predict.py"
    script.write_text(LIGHTNING_SCRIPT)
    run = timed([sys.executable, str(script), str(model), str(listing)])
    images_per_s = round(len(files) / run["wall_s"], 1)
    return {"lightning_trainer_predict": {**run, "images_per_s": images_per_s},
            **{f"speedup_{engine}": round(ours[name]["images_per_s"] / images_per_s, 2)
               for engine, name in (("torch", "catalog_1_worker"), ("onnx", "catalog_1_worker_onnx"))}}


def _runs(values: dict) -> str:
    """The CPU-seconds of every run of a repeated command, for its table cell."""
    if "runs_cpu_s" not in values:
        return ""
    return f", median of {len(values['runs_cpu_s'])} runs of {' / '.join(map(str, values['runs_cpu_s']))} CPU-s"


def markdown(report: dict) -> str:
    tp, memory, e2e = report["throughput"], report["memory"], report["end_to_end"]
    lines = [
        "# The catalog at scale (issue 14)", "",
        f"Before: `{report['uptime_before']}`  ", f"After: `{report['uptime_after']}`", "",
        f"Throughput, before: `{tp['uptime_before']}`  ", f"Throughput, after: `{tp['uptime_after']}`", "",
        *([f"Client costs, at: `{report['client']['uptime']}`", ""] if "client" in report else []),
        *([f"End to end and Lightning, before: `{report['end_to_end_uptime_before']}`  ",
           f"End to end and Lightning, after: `{report['end_to_end_uptime_after']}`", ""]
          if "end_to_end_uptime_before" in report else []),
        *([f"Merge memory, at: `{report['merge']['uptime']}`", ""] if "merge" in report else []),
        *([f"Worker memory, finished at: `{report['memory_uptime']}`", ""] if "memory_uptime" in report else []),
        (f"Classifier: default rotinv, random weights, 3 bands, {IMAGE_SIZE} px, its folder holding the exported "
         "graph as `train` writes it, so that the default engine (`auto`) is ONNX Runtime; gzc JPEGs listed "
         "repeatedly. Sections run at different times keep their own load lines; those measured before the "
         "default became ONNX Runtime (the kill rows, 12:00-12:19) ran the network with torch. Peak memory is "
         "each process's own VmHWM (ru_maxrss, used before, kept the RSS of the benchmark process the workers and "
         "the client scripts were forked from). `catalog --workers 1` runs its shards in its own process, "
         "without Dask (since the session of 2026-12-04, night); `--workers 2` on a LocalCluster."), "",
        "| measurement | value | target |", "|---|---|---|",
        (f"| throughput, 1 worker ({tp['galaxies']} galaxies, start-up included) | "
         f"{tp['1_workers']['images_per_s']} images/s | |"),
        f"| throughput, 2 workers, start-up included | {tp['2_workers']['images_per_s']} images/s | |",
        f"| speed-up 2 vs 1 worker, start-up included | {tp['speedup']}x | >= 1.8x |",
        (f"| steady throughput (after each worker's first shard), 1 / 2 workers | "
         f"{tp['1_workers']['steady_images_per_s']} / {tp['2_workers']['steady_images_per_s']} images/s | |"),
        f"| steady speed-up 2 vs 1 worker | {tp['steady_speedup']}x | >= 1.8x |",
    ]
    for count, values in memory.items():
        lines.append(f"| peak RSS per worker, {count} galaxies | {values['peak_rss_mb_per_worker']} MB | flat |")
    for name in ("kill_worker", "kill_client"):
        values = report[name]
        lines.append(f"| {name.replace('_', ' ')}: lost / duplicated rows of {values['galaxies']} "
                     f"| {values['lost']} / {values['duplicated']} | 0 / 0 |")
    for run in (e2e, report["end_to_end_large"]):
        for engine, suffix in (("torch", ""), ("onnx", "_onnx")):
            ours, single = run[f"catalog_1_worker{suffix}"], run[f"predict{suffix}"]
            lines += [
                (f"| end to end, {run['images']} rows of 424 px JPEGs, catalog 1 worker, engine {engine}, "
                 f"start-up included | {ours['images_per_cpu_s']} images/CPU-s ({ours['images_per_s']} images/s)"
                 f"{_runs(ours)} | >= 250 images/CPU-s |"),
                (f"| end to end, {run['images']} rows, `tuningfork predict --engine {engine}` (one process, "
                 f"2 threads) | {single['images_per_cpu_s']} images/CPU-s ({single['images_per_s']} images/s)"
                 f"{_runs(single)} | |"),
                (f"| catalog ({engine}) vs predict (torch): same class / max confidence difference | "
                 f"{run['same_predicted_class_' + engine]:.3f} / {run['max_confidence_difference_' + engine]:.2g} "
                 f"| 1 / noise |"),
            ]
    reduced = report["reduced_decoding"]
    cost = reduced["read_and_preprocess_cpu_s_per_1000"]
    lines += [
        (f"| JPEG decoded at 1/{reduced['decode_scale']}: read + preprocess CPU-s per 1000 images | "
         f"{cost['reduced']} (whole decode: {cost['whole']}) | |"),
        (f"| reduced vs whole decode: same class / max probability difference / mean pixel difference | "
         f"{reduced['same_predicted_class']:.3f} / {reduced['max_probability_difference']:.2g} / "
         f"{reduced['mean_abs_pixel_difference']:.2g} | within noise |"),
    ]
    for light, run in ((report["lightning"], e2e), (report["lightning_large"], report["end_to_end_large"])):
        lines += [
            (f"| Lightning Trainer.predict + DataLoader, {run['images']} rows | "
             f"{light['lightning_trainer_predict']['images_per_s']} images/s | |"),
            (f"| catalog 1 worker vs Lightning, {run['images']} rows, engine torch / onnx | "
             f"{light['speedup_torch']}x / {light['speedup_onnx']}x | >= 1.5x |"),
        ]
    for count, cost in report.get("client", {}).get("rows", {}).items():
        lines += [
            (f"| opening a {int(count):,}-row CSV catalog in the client (paths, a stat of each file) | "
             f"{cost['cpu_s']} CPU-s ({cost['wall_s']} s) | |"),
            *([(f"| the same without the file check (`--no-check-files`) | {cost['unchecked_cpu_s']} CPU-s "
                f"({cost['unchecked_wall_s']} s) | |")] if "unchecked_cpu_s" in cost else []),
            (f"| client memory, {int(count):,} rows: the opened collection / peak of the run (open, check, merge) "
             f"| {cost['collection_bytes_per_row']:,} / {cost['peak_bytes_per_row']:,} bytes per row | |"),
            (f"| finishing a {int(count):,}-row catalog whose shards are done (check, merge, write) | "
             f"{cost['finish_cpu_s']} CPU-s ({cost['finish_wall_s']} s) | |"),
        ]
    for count, cost in report.get("merge", {}).get("rows", {}).items():
        lines.append(f"| merging {int(count):,} rows of parts into the catalog: the client's peak memory growth "
                     f"| {cost['peak_growth_mb']} MB | flat |")
    stages = report["stages"]
    lines += ["", (f"CPU-seconds per galaxy of each stage alone in one shard (one process, one torch thread, "
                   f"its reading included; {stages['galaxies']} galaxies, morphometry on "
                   f"{' and '.join(map(str, stages['morphometry_galaxies']))}"
                   + (f"; at `{stages['uptime']}`" if "uptime" in stages else "") + "):"), "",
              "| stage | CPU-s per 10^5 galaxies | CPU-ms per galaxy |", "|---|---|---|"]
    for name, value in stages["cpu_s_per_galaxy"].items():
        lines.append(f"| {name} | {value * 1e5:,.0f} | {value * 1e3:,.2f} |")
    fit = stages["clustering_fit"]
    lines += ["", f"The clustering was fitted once, on {fit['galaxies']} 128 px galaxies, in {fit['cpu_s']} CPU-s."]
    lines += ["", "The 424-pixel JPEGs are gzc images upscaled (bicubic) from 128 px: see the module docstring."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="A few hundred galaxies, to check the script.")
    parser.add_argument("--only", choices=["throughput", "client", "merge", "end_to_end", "stages", "memory"],
                        help="Rerun this measurement alone (with its own uptime lines); keep the others of the "
                             "last report.")
    args = parser.parse_args()
    if not (GZC / "images").is_dir():
        sys.exit(f"skipped: {GZC} is absent")
    sizes = QUICK if args.quick else FULL
    stem = "scale_quick" if args.quick else "scale"
    if args.only:
        report = json.loads((RESULTS / f"{stem}.json").read_text())
        with tempfile.TemporaryDirectory() as scratch:
            work = Path(scratch)
            model = save_classifier(work / "classifier")
            sections = {"client": lambda: client_cost(model, work, sizes["memory"], sizes["shard"]),
                        "merge": lambda: merge_memory(model, work, sizes["merge"]),
                        "throughput": lambda: throughput_section(model, work, sizes),
                        "end_to_end": lambda: end_to_end_section(model, work, sizes),
                        "memory": lambda: peak_memory(model, work, sizes["memory"], sizes["shard"]),
                        "stages": lambda: stage_costs(model, work, full_size_jpegs(work / "jpeg424", sizes["end_to_end"]),
                                                      sizes["morphometry"])}
            report.update(sections[args.only]() if args.only == "end_to_end" else {args.only: sections[args.only]()})
            if args.only == "memory":
                report["memory_uptime"] = uptime()
            report.pop("open", None)
        write_report(RESULTS, stem, report, markdown(report))
        return
    report = {"uptime_before": uptime(), "cpus": os.cpu_count(), "quick": args.quick}
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        model = save_classifier(work / "classifier")
        report["throughput"] = throughput_section(model, work, sizes)
        report["memory"] = peak_memory(model, work, sizes["memory"], sizes["shard"])
        report["client"] = client_cost(model, work, sizes["memory"], sizes["shard"],
                                       {str(count): work / f"memory{count}" for count in sizes["memory"]})
        report["merge"] = merge_memory(model, work, sizes["merge"])
        report["kill_worker"] = kill_worker(model, work, sizes["kill"])
        report["kill_client"] = kill_client(model, work, sizes["kill"])
        # Should stay unset: the timed commands below inherit this process's environment.
        report["malloc_trim_threshold_env"] = os.environ.get("MALLOC_TRIM_THRESHOLD_")
        files = full_size_jpegs(work / "jpeg424", sizes["end_to_end"])
        report["reduced_decoding"] = reduced_decoding(model, files)
        report["stages"] = stage_costs(model, work, files, sizes["morphometry"])
        report.update(end_to_end_section(model, work, sizes, files))
    report["uptime_after"] = uptime()
    write_report(RESULTS, stem, report, markdown(report))


if __name__ == "__main__":
    main()
