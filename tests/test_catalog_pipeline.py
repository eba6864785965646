"""``tuningfork catalog``: the classification catalog, shard by shard on Dask distributed."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import torch
from astropy.io import fits
from astropy.table import MaskedColumn, Table
from typer.testing import CliRunner

from cli_helpers import save_tiny_rotinv
from tuningfork.cli import app
from tuningfork.data import GalaxyCollection, write_table
from tuningfork.errors import (
    CatalogError,
    ConfigError,
    EmptyCatalogError,
    MissingColumnError,
    ModelError,
    OutputError,
)
from tuningfork.pipeline import build_catalog, build_manifest, expert_ranks, merge_parts, part_path
from tuningfork.pipeline import catalog as catalog_module
from tuningfork.pipeline.manifest import Manifest, Shard
from tuningfork.training import predict

torch.set_num_threads(1)
runner = CliRunner()


def _write_images(folder, count, seed=0):
    """Gaussian blobs of several widths, so an untrained network still spreads its confidences."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:24, :24] - 11.5
    folder.mkdir(parents=True)
    for index in range(count):
        width = 1.0 + 4.0 * rng.random()
        image = np.exp(-(x**2 + y**2) / (2 * width**2)) + rng.normal(0, 0.05, (24, 24))
        fits.writeto(folder / f"g{index:03d}.fits", image.astype(np.float32))
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    return _write_images(tmp_path_factory.mktemp("data") / "images", 40)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    torch.manual_seed(0)
    return save_tiny_rotinv(tmp_path_factory.mktemp("models") / "model", ["compact", "extended"])


@pytest.fixture(scope="module")
def reference(model, images):
    """``predict`` on the same galaxies, triaged at its median confidence so both sides of triage occur."""
    untriaged = predict(model, images)
    threshold = float(np.median(untriaged["confidence"]))
    return predict(model, images, min_confidence=threshold), threshold


@pytest.fixture(scope="module")
def scheduler():
    """One two-worker cluster for the tests that reach it by address (start-up is the slow part)."""
    from distributed import LocalCluster

    from tuningfork.pipeline.cluster import LOCAL_SCHEDULER

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                      scheduler_kwargs=LOCAL_SCHEDULER) as cluster:
        yield cluster.scheduler_address


def _assert_same_as_predict(catalog, expected):
    assert list(catalog["id"]) == list(expected["id"])
    assert list(catalog["predicted_class"]) == list(expected["predicted_class"])
    np.testing.assert_allclose(catalog["confidence"], expected["confidence"], rtol=1e-5)
    assert list(catalog["triage"]) == list(expected["triage"])
    # The queue is ranked across the whole catalog, not within each shard.
    np.testing.assert_array_equal(catalog["expert_rank"], expected["expert_rank"])


def test_local_cluster_gives_each_id_once_and_the_classes_of_predict(model, images, reference, tmp_path):
    expected, threshold = reference
    out = tmp_path / "catalog"
    result = build_catalog(images, out, model, min_confidence=threshold, shard_size=7, workers=2)
    assert result.shards_run == 6 and result.shards_skipped == 0
    written = Table.read(out / "catalog.parquet")
    assert result.rows == 40 and list(result.catalog["id"]) == list(written["id"])
    assert len(set(written["id"])) == len(written) == 40
    assert (written["triage"] == "expert").any() and (written["triage"] == "confident").any()
    _assert_same_as_predict(written, expected)
    assert len(list((out / "parts").glob("shard-*.parquet"))) == 6
    config = json.loads((out / "config.json").read_text())
    assert config["settings"]["input"]["fingerprint"] == build_manifest(GalaxyCollection.open(images), 7).fingerprint
    assert "distributed" in config["versions"] and "torch" in config["versions"]
    manifest = Table.read(out / "manifest.parquet")
    assert list(manifest["stop"] - manifest["start"]) == [7, 7, 7, 7, 7, 5]


def test_rerun_after_a_killed_run_resumes_without_loss_or_duplicates(model, images, reference, scheduler, tmp_path):
    expected, threshold = reference
    out = tmp_path / "catalog"
    first = build_catalog(images, out, model, min_confidence=threshold, shard_size=6, scheduler=scheduler)
    manifest = build_manifest(GalaxyCollection.open(images), 6)
    # A killed run leaves some parts missing, a temporary file half written, and no merged catalog.
    for shard in manifest.shards[1::3]:
        part_path(out, shard.shard_id).unlink()
    (out / "parts" / f".shard-{manifest.shards[1].shard_id}.abc.parquet").write_bytes(b"half")
    (out / "catalog.parquet").unlink()
    result = build_catalog(images, out, model, min_confidence=threshold, shard_size=6, scheduler=scheduler)
    assert result.shards_run == len(manifest.shards[1::3]) == 2
    assert result.shards_skipped == len(manifest.shards) - 2
    written = Table.read(out / "catalog.parquet")
    assert len(set(written["id"])) == len(written) == 40
    _assert_same_as_predict(written, expected)
    assert list(first.catalog["id"]) == list(written["id"])


def _worker_onnx_networks() -> list[str]:
    from tuningfork.pipeline import local

    return sorted(local._ONNX_NETWORKS)


def test_the_onnx_engine_gives_the_catalog_of_predict(model, images, reference, scheduler, tmp_path):
    from distributed import Client

    expected, threshold = reference
    build_catalog(images, tmp_path / "catalog", model, min_confidence=threshold, engine="onnx", shard_size=10,
                  scheduler=scheduler)
    _assert_same_as_predict(Table.read(tmp_path / "catalog" / "catalog.parquet"), expected)
    # The model folder has no graph, so the client exported one for the workers.
    assert (tmp_path / "catalog" / "classifier.onnx").is_file()
    with Client(scheduler) as client:
        held = client.run(_worker_onnx_networks)
    assert [str(model.resolve())] in held.values()
    assert "'cuda'" in _error_line(runner.invoke(app, ["catalog", str(images), "--out", str(tmp_path / "c"),
                                                      "--classifier", str(model), "--engine", "cuda"]))


def test_the_default_engine_runs_without_torch_in_any_process_given_a_stored_graph(model, images, reference, tmp_path):
    """With the graph in the model folder, the default engine imports torch in neither the client, nor the worker,
    nor ``predict``; one local worker runs the shards without importing Dask either."""
    import os
    import shutil
    import subprocess
    import sys

    from tuningfork.models.export import export_onnx

    folder = tmp_path / "model"
    shutil.copytree(model, folder)
    export_onnx(folder)
    # Stand-ins for torch and Dask first on the path: any process that imports one leaves a mark (and fails).
    mark = tmp_path / "imported"
    for name in ("torch", "distributed"):
        blocked = tmp_path / "blocked" / name
        blocked.mkdir(parents=True)
        (blocked / "__init__.py").write_text(f"open({str(mark)!r}, 'a').write({name!r})\n"
                                             f"raise ImportError('blocked')\n")
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(tmp_path / "blocked"), os.environ.get("PYTHONPATH", "")])}
    expected, threshold = reference
    commands = {"catalog": ["catalog", str(images), "--out", str(tmp_path / "catalog"), "--classifier", str(folder),
                            "--workers", "1", "--shard-size", "20", "--min-confidence", str(threshold)],
                "predict": ["predict", str(folder), str(images), "--out", str(tmp_path / "predicted.parquet"),
                            "--min-confidence", str(threshold)]}
    for name, arguments in commands.items():
        done = subprocess.run([sys.executable, "-m", "tuningfork.cli", *arguments], env=env,
                              capture_output=True, text=True, timeout=300, check=False)
        assert done.returncode == 0, f"{name}: {done.stderr[-2000:]}"
    assert not mark.exists(), mark.read_text()
    _assert_same_as_predict(Table.read(tmp_path / "catalog" / "catalog.parquet"), expected)
    _assert_same_as_predict(Table.read(tmp_path / "predicted.parquet"), expected)


def _worker_models() -> list[str]:
    from tuningfork.pipeline import local

    return sorted(local._MODELS)


def test_each_worker_holds_the_model_it_loaded_once(model, images, scheduler, tmp_path):
    from distributed import Client

    build_catalog(images, tmp_path / "catalog", model, shard_size=10, scheduler=scheduler)
    with Client(scheduler) as client:
        held = client.run(_worker_models)
        threads = client.run(torch.get_num_threads)
    assert len(held) == 2 and all(models == [str(model.resolve())] for models in held.values())
    assert set(threads.values()) == {1}


def test_one_local_worker_runs_on_one_thread_and_gives_the_caller_its_threads_back(model):
    from threadpoolctl import threadpool_info

    from tuningfork.pipeline import local

    original = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        before = [pool["num_threads"] for pool in threadpool_info()]
        with local.one_core([model], engine="torch"):
            assert torch.get_num_threads() == 1
            assert all(pool["num_threads"] == 1 for pool in threadpool_info())
            assert str(model.resolve()) in local._MODELS
        assert torch.get_num_threads() == 2
        assert [pool["num_threads"] for pool in threadpool_info()] == before
    finally:
        torch.set_num_threads(original)


@pytest.mark.parametrize("workers", [0, -2, True, 1.5])
def test_a_worker_count_that_is_not_a_positive_integer_is_refused(model, images, workers, tmp_path):
    with pytest.raises(ConfigError, match="positive integer"):
        build_catalog(images, tmp_path / "catalog", model, workers=workers)


def test_changed_settings_in_an_existing_folder_are_refused(model, images, scheduler, tmp_path):
    out = tmp_path / "catalog"
    build_catalog(images, out, model, shard_size=20, scheduler=scheduler)
    with pytest.raises(OutputError, match="other input or settings"):
        build_catalog(images, out, model, shard_size=10, scheduler=scheduler)
    result = build_catalog(images, out, model, shard_size=10, scheduler=scheduler, overwrite=True)
    assert result.shards_run == 4
    assert len(list((out / "parts").glob("shard-*.parquet"))) == 4


def test_a_corrupt_file_lands_in_the_failures_table(model, scheduler, tmp_path):
    folder = _write_images(tmp_path / "images", 10, seed=3)
    (folder / "g004.fits").write_bytes(b"not a FITS file" * 10)
    out = tmp_path / "catalog"
    result = build_catalog(folder, out, model, shard_size=4, scheduler=scheduler)
    assert len(result.catalog) == 9 and "g004" not in set(result.catalog["id"])
    failures = Table.read(out / "failures.parquet")
    assert list(failures["id"]) == ["g004"]
    assert failures["file"][0].endswith("g004.fits") and "g004.fits" in failures["error"][0]
    # The good galaxies of the failing shard are classified as they would be alone.
    alone = predict(model, GalaxyCollection.open(folder).subset([5, 6, 7]))
    shard = result.catalog[np.isin(result.catalog["id"], ["g005", "g006", "g007"])]
    np.testing.assert_allclose(shard["confidence"], alone["confidence"], rtol=1e-5)


def test_without_the_file_check_a_missing_file_is_a_failure_row_not_an_error(model, scheduler, tmp_path):
    from tuningfork.errors import MissingImagesError

    folder = _write_images(tmp_path / "images", 8, seed=5)
    listing = tmp_path / "list.csv"
    Table({"id": [f"g{index:03d}" for index in range(8)],
           "file": [str(folder / f"g{index:03d}.fits") for index in range(8)]}).write(listing)
    (folder / "g002.fits").unlink()
    with pytest.raises(MissingImagesError, match="g002.fits"):
        GalaxyCollection.open(listing)
    with pytest.raises(ConfigError, match="needs the file check"):
        GalaxyCollection.open(listing, skip_missing=True, check_files=False)
    result = runner.invoke(app, ["catalog", str(listing), "--out", str(tmp_path / "catalog"), "--classifier",
                                 str(model), "--scheduler", scheduler, "--shard-size", "3", "--no-check-files"])
    assert result.exit_code == 0, result.output
    catalog = Table.read(tmp_path / "catalog" / "catalog.parquet")
    assert len(catalog) == 7 and "g002" not in set(catalog["id"])
    failures = Table.read(tmp_path / "catalog" / "failures.parquet")
    assert list(failures["id"]) == ["g002"] and "g002.fits" in failures["error"][0]


def test_a_shard_of_corrupt_files_only_and_an_unreadable_data_set(model, scheduler, tmp_path):
    folder = _write_images(tmp_path / "images", 6, seed=4)
    for name in ("g000", "g001"):
        (folder / f"{name}.fits").write_bytes(b"junk" * 30)
    result = build_catalog(folder, tmp_path / "catalog", model, shard_size=2, scheduler=scheduler)
    assert list(result.catalog["id"]) == ["g002", "g003", "g004", "g005"]
    assert list(result.failures["id"]) == ["g000", "g001"]
    with pytest.raises(CatalogError, match="none of its 2 galaxies"):
        build_catalog(GalaxyCollection.open(folder).subset([0, 1]), tmp_path / "none", model,
                      scheduler=scheduler)
    assert len(Table.read(tmp_path / "none" / "failures.parquet")) == 2


def test_an_unknown_column_is_refused_before_any_cluster_starts(model, images, tmp_path):
    with pytest.raises(MissingColumnError, match="magnitude"):
        build_catalog(images, tmp_path / "c", model, columns=["magnitude"], scheduler="tcp://127.0.0.1:9")


def test_cli_writes_a_fits_catalog_that_astropy_opens(model, images, scheduler, tmp_path):
    out = tmp_path / "catalog"
    result = runner.invoke(app, ["catalog", str(images), "--out", str(out), "--classifier", str(model),
                                 "--scheduler", scheduler, "--shard-size", "16", "--fits",
                                 "--min-confidence", "0.6"])
    assert result.exit_code == 0, result.output
    assert "40 galaxies" in result.output
    table = Table.read(out / "catalog.fits")
    assert len(table) == 40 and {"id", "predicted_class", "prob_compact", "expert_rank"} <= set(table.colnames)
    with fits.open(out / "catalog.fits") as hdus:
        assert hdus[1].header["NAXIS2"] == 40
    rerun = runner.invoke(app, ["catalog", str(images), "--out", str(out), "--classifier", str(model),
                                "--scheduler", scheduler, "--shard-size", "16", "--min-confidence", "0.6"])
    assert rerun.exit_code == 0 and "3 finished earlier" in rerun.output


def _error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.output
    return lines[0]


def test_unreachable_scheduler_is_a_quick_one_line_error(model, images, tmp_path):
    start = time.monotonic()
    result = runner.invoke(app, ["catalog", str(images), "--out", str(tmp_path / "c"), "--classifier", str(model),
                                 "--scheduler", "tcp://127.0.0.1:9"])
    assert "tcp://127.0.0.1:9" in _error_line(result)
    assert time.monotonic() - start < 20


def test_empty_catalog_and_missing_model_are_one_line_errors(model, images, tmp_path):
    empty = tmp_path / "empty.csv"
    empty.write_text("id,file\n")
    assert "empty.csv" in _error_line(runner.invoke(app, ["catalog", str(empty), "--out", str(tmp_path / "c"),
                                                          "--classifier", str(model)]))
    assert "nowhere" in _error_line(runner.invoke(app, ["catalog", str(images), "--out", str(tmp_path / "c"),
                                                        "--classifier", str(tmp_path / "nowhere")]))
    assert "--classifier" in _error_line(runner.invoke(app, ["catalog", str(images), "--out", str(tmp_path / "c")]))
    with pytest.raises(ConfigError, match="not both"):
        build_catalog(images, tmp_path / "c", model, workers=2, scheduler="tcp://127.0.0.1:9")


def test_data_the_model_cannot_take_is_refused_before_any_cluster_starts(model, tmp_path):
    stack = tmp_path / "two_bands.npz"
    np.savez(stack, images=np.ones((4, 2, 24, 24), dtype=np.float32))
    start = time.monotonic()
    with pytest.raises(ModelError, match="two_bands.npz"):
        build_catalog(stack, tmp_path / "c", model, scheduler="tcp://127.0.0.1:9")
    assert time.monotonic() - start < 4


def test_manifest_shard_ids_are_deterministic(images):
    collection = GalaxyCollection.open(images)
    first, again = build_manifest(collection, 8), build_manifest(GalaxyCollection.open(images), 8)
    assert first == again and len({shard.shard_id for shard in first.shards}) == 5
    assert [(shard.start, shard.stop) for shard in first.shards] == [(0, 8), (8, 16), (16, 24), (24, 32), (32, 40)]
    # A shard's id depends on its galaxies only, so the shards that stay the same keep their ids.
    assert build_manifest(collection.subset(slice(0, 36)), 8).shards[:4] == first.shards[:4]
    assert build_manifest(collection.subset(slice(0, 36)), 8).fingerprint != first.fingerprint
    with pytest.raises(EmptyCatalogError):
        build_manifest(collection.subset([]), 8)
    with pytest.raises(CatalogError, match="more than once"):
        build_manifest(collection.subset([0, 1, 0]), 8)
    with pytest.raises(ConfigError, match="shard size"):
        build_manifest(collection, 0)


def _merge_folder(folder, parts):
    """A catalog folder whose shards wrote ``parts`` (tables; an empty one for a shard whose galaxies all failed)."""
    shards, start = [], 0
    for index, table in enumerate(parts):
        shards.append(Shard(f"{index:016x}", start, start + max(len(table), 1)))
        start = shards[-1].stop
        write_table(part_path(folder, shards[-1].shard_id), table)
    return Manifest(shards, "fingerprint", start)


def _part(ids, priorities, second=None):
    # ``second``: a masked column, masked where None (astropy stores a mask only where some value is masked).
    second = [None] * len(ids) if second is None else second
    return Table({"id": ids, "predicted_class": ["spiral"] * len(ids), "expert_priority": priorities,
                  "expert_rank": np.full(len(ids), np.nan),
                  "second_group": MaskedColumn([-1 if value is None else value for value in second],
                                               mask=[value is None for value in second])})


def test_the_merge_streams_parts_in_row_groups_ranking_and_keeping_the_longest_text(tmp_path, monkeypatch):
    import pandas as pd
    import pyarrow.parquet as pq

    monkeypatch.setattr(catalog_module, "_ROW_GROUP", 4)
    parts = [_part(["a", "b", "c"], [0.2, np.nan, 0.5], [1, 2, 3]), _part(["a-much-longer-id", "e"], [0.9, 0.1]),
             Table({"id": []}), _part(["f", "gg", "h"], [np.nan, 0.3, 0.5], [4, None, 5])]
    manifest = _merge_folder(tmp_path, parts)
    rows, failures = merge_parts(tmp_path, manifest)
    assert rows == 8 and len(failures) == 0
    merged = Table.read(tmp_path / "catalog.parquet")
    # The longer id of the second part is whole, though the first part's strings were shorter.
    assert list(merged["id"]) == ["a", "b", "c", "a-much-longer-id", "e", "f", "gg", "h"]
    priorities = np.array([0.2, np.nan, 0.5, 0.9, 0.1, np.nan, 0.3, 0.5])
    np.testing.assert_array_equal(merged["expert_rank"], expert_ranks(priorities))
    # Masks survive whether or not a part had masked values (its mask column then absent).
    assert list(merged["second_group"].mask) == [False, False, False, True, True, False, True, False]
    assert list(merged["second_group"].filled(0)) == [1, 2, 3, 0, 0, 4, 0, 5]
    assert pq.ParquetFile(tmp_path / "catalog.parquet").num_row_groups == 2
    assert list(pd.read_parquet(tmp_path / "catalog.parquet")["id"]) == list(merged["id"])


def test_a_part_of_other_columns_is_a_clear_error_and_leaves_no_catalog(tmp_path):
    manifest = _merge_folder(tmp_path, [_part(["a"], [0.1]), Table({"id": ["b"], "predicted_class": [3]})])
    with pytest.raises(CatalogError, match="shard-0000000000000001.parquet: its columns do not match"):
        merge_parts(tmp_path, manifest)
    assert not (tmp_path / "catalog.parquet").exists()


def test_expert_ranks_order_the_whole_catalog_by_priority():
    ranks = expert_ranks(np.array([0.2, np.nan, 0.6, 0.2, np.nan, 0.9]))
    np.testing.assert_array_equal(ranks, [3, np.nan, 2, 4, np.nan, 1])


def test_a_client_killed_mid_run_resumes_without_loss_or_duplicates(model, images, tmp_path):
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "catalog"
    command = [sys.executable, "-m", "tuningfork.cli", "catalog", str(images), "--out", str(out),
               "--classifier", str(model), "--workers", "1", "--shard-size", "1"]
    # Its own session, so the kill takes its cluster's worker processes along with it.
    process = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list((out / "parts").glob("shard-*.parquet"))) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    finished = len(list((out / "parts").glob("shard-*.parquet")))
    assert 5 <= finished < 40 and not (out / "catalog.parquet").exists()
    result = runner.invoke(app, command[3:])
    assert result.exit_code == 0, result.output
    written = Table.read(out / "catalog.parquet")
    assert len(set(written["id"])) == len(written) == 40
    assert list(written["id"]) == GalaxyCollection.open(images).ids


def test_a_worker_killed_mid_run_loses_and_duplicates_nothing(model, scheduler, tmp_path):
    import os
    import signal
    import threading

    from distributed import Client

    # Enough one-galaxy shards that the kill lands while most are still to run.
    images = _write_images(tmp_path / "images", 200, seed=5)
    out = tmp_path / "catalog"
    outcome = {}

    def run():
        outcome["result"] = build_catalog(images, out, model, shard_size=1, scheduler=scheduler)

    runner_thread = threading.Thread(target=run)
    runner_thread.start()
    deadline = time.monotonic() + 60
    while len(list((out / "parts").glob("shard-*.parquet"))) < 3 and time.monotonic() < deadline:
        time.sleep(0.02)
    with Client(scheduler) as client:
        pids = client.run(os.getpid)
    # The fixture's nanny restarts the worker, so later tests still have two.
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    assert len(list((out / "parts").glob("shard-*.parquet"))) < 200 and runner_thread.is_alive()
    runner_thread.join(timeout=120)
    assert not runner_thread.is_alive() and "result" in outcome
    written = Table.read(out / "catalog.parquet")
    assert len(set(written["id"])) == len(written) == 200
    assert list(written["id"]) == GalaxyCollection.open(images).ids


def test_local_workers_keep_glibc_adaptive_malloc(monkeypatch):
    # Dask's default MALLOC_TRIM_THRESHOLD_ made every decoded stamp a fresh mmap
    # (as much system time as compute, bench_scale.py); the clusters we start unset
    # it, even after an earlier nanny in this process leaked it into os.environ.
    import os

    from tuningfork.pipeline.cluster import open_client

    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with open_client(workers=1) as client:
        environ = next(iter(client.run(lambda: dict(os.environ)).values()))
    assert "MALLOC_TRIM_THRESHOLD_" not in environ
    assert environ["OMP_NUM_THREADS"] == "1"
    assert os.environ["MALLOC_TRIM_THRESHOLD_"] == "65536"
