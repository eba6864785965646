"""A tiny catalog for the explorer's tests: simulated galaxies, an untrained model, its predictions."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
from astropy.table import Table

from cli_helpers import save_tiny_rotinv, write_simulated
from tuningfork.training import predict

TOKENS = {"token-alice": "alice", "token-bob": "bob"}


def make_catalog(folder: Path, n: int = 12) -> dict:
    """Write a predictions Parquet and a catalog folder (with group, outlier, neighbour and morphometry columns).

    Returns a dict with ``data`` (the data set's catalog), ``model``, ``predictions`` (Parquet) and
    ``catalog`` (folder).
    """
    data, _ = write_simulated(folder / "data", n, seed=1)
    classes = sorted({str(label) for label in Table.read(data)["label"]})
    model = save_tiny_rotinv(folder / "model", classes)
    predictions = folder / "preds.parquet"
    table = predict(model, data, predictions, min_confidence=0.99)
    catalog = folder / "catalog"
    catalog.mkdir()
    ids = list(table["id"])
    table["group"] = np.arange(len(table)) % 3
    table["outlier_score"] = np.linspace(0.0, 1.0, len(table))
    for k in (1, 2):
        table[f"neighbour_{k}"] = [ids[(i + k) % len(ids)] for i in range(len(ids))]
    table["gini"] = np.linspace(0.3, 0.6, len(table))
    table.write(catalog / "catalog.parquet")
    (catalog / "config.json").write_text(json.dumps({"settings": {}, "input": str(data)}))
    return {"data": data, "model": model, "predictions": predictions, "catalog": catalog, "classes": classes,
            "ids": [str(value) for value in ids]}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_server(catalog, labels, tokens, port):
    """Run ``tuningfork explore`` in a child process; return it once it answers."""
    command = [sys.executable, "-m", "tuningfork.cli", "explore", str(catalog), "--labels", str(labels),
               "--port", str(port)]
    for name, token in tokens:
        command += ["--token", f"{name}:{token}"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(process.stdout.read().decode())
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/meta", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("explorer did not start within 60 s")
