"""The explorer's JSON API, through FastAPI's TestClient and a real uvicorn server."""

from __future__ import annotations

import io
import signal
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from tuningfork.data.labels import LabelLog
from tuningfork.web import create_app
from tuningfork.web.server import check_host, is_loopback, parse_tokens
from web_helpers import TOKENS, free_port, make_catalog, start_server

ALICE = {"Authorization": "Bearer token-alice"}
BOB = {"Authorization": "Bearer token-bob"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_catalog(tmp_path_factory.mktemp("explorer"))


@pytest.fixture(params=["catalog", "predictions"])
def client(request, tiny, tmp_path):
    return TestClient(create_app(tiny[request.param], tmp_path / "labels.sqlite", TOKENS))


def test_queue_is_in_expert_priority_order_and_filters(client, tiny):
    queue = client.get("/api/queue", params={"limit": 100}).json()
    assert queue["total"] == len(tiny["ids"])
    ranks = [item["expert_rank"] for item in queue["items"]]
    assert ranks == sorted(ranks)
    middle = sorted(item["confidence"] for item in queue["items"])[5]
    low = client.get("/api/queue", params={"min_confidence": 0.0, "max_confidence": middle}).json()
    assert low["total"] == 6 and all(item["confidence"] <= middle for item in low["items"])
    predicted = queue["items"][0]["predicted_class"]
    same = client.get("/api/queue", params={"predicted_class": predicted}).json()
    assert all(item["predicted_class"] == predicted for item in same["items"])
    assert client.get("/api/queue", params={"triage": "nonsense"}).json()["total"] == 0


def test_catalog_folder_columns_are_shown_and_filtered(tiny, tmp_path):
    client = TestClient(create_app(tiny["catalog"], tmp_path / "labels.sqlite", TOKENS))
    galaxy_id = tiny["ids"][0]
    galaxy = client.get(f"/api/galaxy/{galaxy_id}").json()
    assert galaxy["measurements"] == {"gini": pytest.approx(0.3)}
    assert galaxy["cluster"] == {"group": 0} and galaxy["has_similar"]
    assert set(galaxy["probabilities"]) == set(tiny["classes"])
    assert galaxy["bands"] == 1
    similar = client.get(f"/api/galaxy/{galaxy_id}/similar").json()["items"]
    assert [item["id"] for item in similar] == tiny["ids"][1:3]
    group = client.get("/api/queue", params={"group": "1"}).json()["items"]
    assert group and all(item["group"] == 1 for item in group)
    outliers = client.get("/api/queue", params={"min_outlier": 0.95}).json()["items"]
    assert [item["id"] for item in outliers] == [tiny["ids"][-1]]


def test_a_predictions_parquet_has_no_cluster_columns_and_no_similar(tiny, tmp_path):
    client = TestClient(create_app(tiny["predictions"], tmp_path / "labels.sqlite", TOKENS))
    galaxy = client.get(f"/api/galaxy/{tiny['ids'][0]}").json()
    assert galaxy["cluster"] == {} and not galaxy["has_similar"]
    assert client.get(f"/api/galaxy/{tiny['ids'][0]}/similar").json()["items"] == []
    response = client.get("/api/queue", params={"group": "1"})
    assert response.status_code == 400 and "group" in response.json()["detail"]


def test_images_render_with_every_stretch(client, tiny):
    from PIL import Image

    sizes = set()
    for stretch in ("linear", "asinh", "log"):
        response = client.get(f"/api/galaxy/{tiny['ids'][0]}/image.png", params={"stretch": stretch, "invert": True})
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        sizes.add(Image.open(io.BytesIO(response.content)).size)
    assert sizes == {(32, 32)}
    assert client.get(f"/api/galaxy/{tiny['ids'][0]}/image.png", params={"stretch": "gamma"}).status_code == 400
    assert client.get(f"/api/galaxy/{tiny['ids'][0]}/image.png", params={"bands": "3"}).status_code == 400


@pytest.mark.parametrize("path", [
    "/api/galaxy/..%2F..%2F..%2Fetc%2Fpasswd/image.png",
    "/api/galaxy/%2Fetc%2Fpasswd/image.png",
    "/static/..%2F..%2F..%2Fpyproject.toml",
    "/static/../app.py",
    "/api/galaxy/nonexistent/image.png",
])
def test_path_traversal_gets_404(client, path):
    assert client.get(path).status_code == 404


def test_image_files_outside_the_data_root_are_not_read(tiny, tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(tiny["predictions"]).to_pandas()
    outside = tmp_path / "secret.fits"
    outside.write_bytes(Path(table["file"].iloc[0]).read_bytes())
    table.loc[0, "file"] = str(Path(tiny["data"]).parent / "images" / ".." / ".." / ".." / outside.name)
    table.loc[1, "file"] = str(outside)
    path = tmp_path / "forged.parquet"
    table.to_parquet(path)
    client = TestClient(create_app(path, tmp_path / "labels.sqlite", TOKENS, data_root=Path(tiny["data"]).parent))
    for row in (0, 1):
        assert client.get(f"/api/galaxy/{table['id'].iloc[row]}/image.png").status_code == 404
    assert client.get(f"/api/galaxy/{table['id'].iloc[2]}/image.png").status_code == 200


def test_writes_need_a_valid_token(client, tiny):
    body = {"id": tiny["ids"][0], "label": tiny["classes"][0]}
    assert client.post("/api/labels", json=body).status_code == 401
    assert client.post("/api/labels", json=body, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.post("/api/labels", json=body, headers={"Authorization": "token-alice"}).status_code == 401
    assert client.post("/api/labels/undo").status_code == 401
    assert client.post("/api/labels", json=body, headers=ALICE).status_code == 200
    assert client.get("/api/labels").json()[0]["labels"] == f"alice={tiny['classes'][0]}"


def test_bad_labels_and_ids_are_refused(client, tiny):
    assert client.post("/api/labels", json={"id": tiny["ids"][0], "label": "dragon"}, headers=ALICE).status_code == 400
    assert client.post("/api/labels", json={"id": "nope", "label": tiny["classes"][0]}, headers=ALICE).status_code == 404
    assert client.post("/api/labels", json={"id": tiny["ids"][0], "action": "skip"}, headers=ALICE).status_code == 200


def test_label_undo_export_and_agreement(client, tiny):
    first, second = tiny["ids"][:2]
    spiral, other = tiny["classes"][0], tiny["classes"][1]
    client.post("/api/labels", json={"id": first, "label": spiral}, headers=ALICE)
    client.post("/api/labels", json={"id": second, "label": spiral}, headers=ALICE)
    undone = client.post("/api/labels/undo", headers=ALICE).json()["undone"]
    assert undone["galaxy_id"] == second
    client.post("/api/labels", json={"id": second, "label": other}, headers=ALICE)
    client.post("/api/labels", json={"id": first, "label": spiral}, headers=BOB)
    client.post("/api/labels", json={"id": second, "label": spiral}, headers=BOB)
    assert client.get("/api/queue", params={"unlabelled": True}, headers=ALICE).json()["total"] == len(tiny["ids"]) - 2
    mine = client.get(f"/api/galaxy/{second}", headers=BOB).json()["my_label"]
    assert mine == spiral
    log = pd.read_csv(io.StringIO(client.get("/api/labels", params={"kind": "log", "format": "csv"}).text))
    assert list(log["action"]) == ["label", "label", "undo", "label", "label", "label"]
    per_annotator = pd.read_parquet(io.BytesIO(client.get("/api/labels", params={
        "kind": "annotators", "format": "parquet", "annotator": "bob"}).content))
    assert list(per_annotator["annotator"]) == ["bob", "bob"]
    agreement = client.get("/api/agreement").json()
    assert agreement["method"] == "cohen" and agreement["galaxies"] == 2
    assert [row["galaxy_id"] for row in agreement["disagreements"]] == [second]
    assert client.get("/api/labels", params={"format": "xml"}).status_code == 400


def test_search_by_id_and_position(client, tiny):
    found = client.get("/api/search", params={"q": tiny["ids"][3]}).json()["items"]
    assert [item["id"] for item in found] == [tiny["ids"][3]]
    assert len(client.get("/api/search", params={"q": "sim0000"}).json()["items"]) == len(tiny["ids"])


def test_search_by_position(tiny, tmp_path):
    import pyarrow.parquet as pq

    table = pq.read_table(tiny["predictions"]).to_pandas()
    table["ra"] = 150.0 + 0.01 * table.index
    table["dec"] = 2.0
    path = tmp_path / "sky.parquet"
    table.to_parquet(path)
    client = TestClient(create_app(path, tmp_path / "labels.sqlite", TOKENS))
    found = client.get("/api/search", params={"ra": 150.0301, "dec": 2.0, "radius": 5}).json()["items"]
    assert [item["id"] for item in found] == [table["id"].iloc[3]]
    assert found[0]["separation_arcsec"] == pytest.approx(0.36, abs=0.01)


def test_the_catalog_is_not_written(tiny, tmp_path):
    before = {path: path.stat().st_mtime_ns for path in Path(tiny["catalog"]).iterdir()}
    client = TestClient(create_app(tiny["catalog"], tmp_path / "labels.sqlite", TOKENS))
    client.post("/api/labels", json={"id": tiny["ids"][0], "label": tiny["classes"][0]}, headers=ALICE)
    client.get(f"/api/galaxy/{tiny['ids'][0]}/similar")
    assert {path: path.stat().st_mtime_ns for path in Path(tiny["catalog"]).iterdir()} == before


def test_pages_and_assets_are_served_from_the_package(client, tiny):
    for path in ("/", f"/galaxy/{tiny['ids'][0]}", "/disagreements"):
        page = client.get(path)
        assert page.status_code == 200 and "/static/app.js" in page.text
        assert "http://" not in page.text and "https://" not in page.text
    for asset in ("/static/app.js", "/static/style.css"):
        assert client.get(asset).status_code == 200


def test_host_and_token_checks():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    with pytest.raises(ValueError, match="0.0.0.0 accepts connections from other machines"):
        check_host("0.0.0.0", {})
    check_host("0.0.0.0", {"secret": "alice"})
    assert parse_tokens(["alice:a1", "b2"]) == {"a1": "alice", "b2": "expert"}
    with pytest.raises(ValueError, match="of their own"):
        parse_tokens(["alice:a1", "alice:a2"])
    with pytest.raises(ValueError, match="empty"):
        parse_tokens(["alice:"])


def test_the_command_refuses_a_public_host_without_a_token(tiny, tmp_path):
    from cli_helpers import invoke

    result, _ = invoke("explore", tiny["catalog"], "--labels", tmp_path / "l.sqlite", "--host", "0.0.0.0")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "--host 0.0.0.0" in lines[0] and "--token" in lines[0]


# ------------------------------------------------------------- real server
@pytest.mark.slow
def test_eight_annotators_posting_at_once_lose_and_duplicate_nothing(tiny, tmp_path):
    annotators = [(f"annotator{index}", f"token-{index}") for index in range(8)]
    port = free_port()
    server = start_server(tiny["catalog"], tmp_path / "labels.sqlite", annotators, port)
    sent = {name: [] for name, _ in annotators}
    errors = []
    barrier = threading.Barrier(len(annotators))

    def annotate(name, token):
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60,
                          headers={"Authorization": f"Bearer {token}"}) as http:
            barrier.wait()
            for index in range(200):
                body = {"id": tiny["ids"][index % len(tiny["ids"])], "label": tiny["classes"][index % len(tiny["classes"])]}
                response = http.post("/api/labels", json=body)
                if response.status_code != 200:
                    errors.append(response.text)
                sent[name].append((body["id"], body["label"], response.json()["seq"]))

    try:
        threads = [threading.Thread(target=annotate, args=pair) for pair in annotators]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert not errors
    rows = LabelLog(tmp_path / "labels.sqlite").rows()
    assert len(rows) == 8 * 200 and rows["seq"].is_unique
    for name, labels in sent.items():
        mine = rows[rows["annotator"] == name].sort_values("seq")
        assert list(zip(mine["galaxy_id"], mine["label"], mine["seq"])) == labels


@pytest.mark.slow
def test_killing_the_server_loses_no_acknowledged_label(tiny, tmp_path):
    port = free_port()
    server = start_server(tiny["catalog"], tmp_path / "labels.sqlite", [("alice", "token-alice")], port)
    acknowledged = []
    stop = threading.Event()

    def annotate():
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10, headers=ALICE) as http:
            index = 0
            while not stop.is_set():
                try:
                    response = http.post("/api/labels", json={"id": tiny["ids"][index % len(tiny["ids"])],
                                                              "label": tiny["classes"][0]})
                except httpx.HTTPError:
                    return
                if response.status_code == 200:
                    acknowledged.append(response.json()["seq"])
                index += 1

    thread = threading.Thread(target=annotate)
    thread.start()
    while len(acknowledged) < 50:
        time.sleep(0.01)
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=30)
    stop.set()
    thread.join()
    rows = LabelLog(tmp_path / "labels.sqlite").rows()
    assert set(acknowledged) <= set(rows["seq"])
    # At most the request in flight at the kill was stored without its answer.
    assert len(rows) - len(acknowledged) <= 1


def test_serve_binds_loopback_and_prints_a_random_token(tiny, tmp_path, monkeypatch):
    import uvicorn

    from tuningfork.web import serve

    started = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port, **options: started.update(app=app, host=host, port=port))
    lines = []
    serve(tiny["catalog"], tmp_path / "labels.sqlite", echo=lines.append)
    assert (started["host"], started["port"]) == ("127.0.0.1", 8000)
    token = lines[0].rsplit(" ", 1)[1]
    assert len(token) >= 16 and f"?token={token}" in lines[1]
    client = TestClient(started["app"])
    body = {"id": tiny["ids"][0], "label": tiny["classes"][0]}
    assert client.post("/api/labels", json=body, headers={"Authorization": f"Bearer {token}"}).status_code == 200
    lines.clear()
    serve(tiny["catalog"], tmp_path / "labels.sqlite", echo=lines.append)
    assert lines[0].rsplit(" ", 1)[1] != token


def test_band_toggles_and_invert_change_the_rendered_pixels():
    from PIL import Image

    from tuningfork.web.images import render_png

    image = np.zeros((3, 8, 8), dtype=np.float32)
    image[:, 2:6, 2:6] = 1.0
    image[0] += np.linspace(0, 0.01, 64).reshape(8, 8)

    def pixels(**options):
        return np.asarray(Image.open(io.BytesIO(render_png(image, **options))))

    every = pixels(stretch="linear")
    assert every.shape == (8, 8, 3) and every[4, 4].min() >= 250 and every[0, 0].max() == 0
    # Bands run blue to red: band 0 is the blue channel of the PNG.
    only_blue = pixels(stretch="linear", bands=[0])
    assert only_blue[4, 4, :2].tolist() == [0, 0] and only_blue[4, 4, 2] >= 250
    assert (pixels(stretch="linear", invert=True) == 255 - every).all()
    assert image[1, 0, 0] == 0.0  # the caller's array is left alone


def test_similar_galaxies_come_from_the_folders_faiss_index(tiny, tmp_path):
    import shutil

    import pyarrow.parquet as pq

    from tuningfork.embeddings.search import open_or_build_index
    from tuningfork.embeddings.store import EmbeddingWriter, load_embeddings

    folder = tmp_path / "catalog"
    shutil.copytree(tiny["catalog"], folder)
    table = pq.read_table(folder / "catalog.parquet").to_pandas()
    table.drop(columns=["neighbour_1", "neighbour_2"]).to_parquet(folder / "catalog.parquet")
    vectors = np.random.default_rng(0).normal(size=(len(tiny["ids"]), 8)).astype(np.float32)
    distances = np.linalg.norm(vectors - vectors[5], axis=1)
    nearest = [tiny["ids"][row] for row in np.argsort(distances)[1:3]]
    with EmbeddingWriter(folder / "embeddings.parquet", len(vectors), 8, {"encoder": "test"}) as writer:
        writer.write(tiny["ids"], vectors)
    open_or_build_index(load_embeddings(folder / "embeddings.parquet"), metric="l2")
    client = TestClient(create_app(folder, tmp_path / "labels.sqlite", TOKENS))
    assert client.get(f"/api/galaxy/{tiny['ids'][5]}").json()["has_similar"]
    similar = client.get(f"/api/galaxy/{tiny['ids'][5]}/similar", params={"k": 2}).json()["items"]
    assert [item["id"] for item in similar] == nearest
