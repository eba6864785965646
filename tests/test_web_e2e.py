"""End to end in headless Chromium: label three galaxies by keyboard, undo one, read the database."""

from __future__ import annotations

from pathlib import Path

import pytest

from tuningfork.data.labels import LabelLog
from web_helpers import free_port, make_catalog, start_server

CHROMIUM = Path("/usr/bin/chromium")
#: Debian's Chromium, driven by Playwright; nothing is downloaded (``playwright install`` is never run).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update"]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"{CHROMIUM} missing (apt-get install -y chromium)"),
]


def test_label_three_galaxies_by_keyboard_and_undo_one(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
    tiny = make_catalog(tmp_path)
    labels = tmp_path / "labels.sqlite"
    port = free_port()
    server = start_server(tiny["catalog"], labels, [("alice", "token-alice")], port)
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{port}/?token=token-alice")
            page.wait_for_selector("body[data-ready=true]")
            shown = page.eval_on_selector_all("#queue .item", "nodes => nodes.map(node => node.dataset.id)")
            assert len(shown) == len(tiny["ids"])
            assert "token" not in page.url
            for key in ("1", "2", "1"):
                with page.expect_response(lambda response: response.url.endswith("/api/labels")):
                    page.keyboard.press(key)
            with page.expect_response(lambda response: response.url.endswith("/api/labels/undo")):
                page.keyboard.press("z")
            page.wait_for_selector("#status:has-text('undid')")
            # The undone galaxy is selected again, ready to be relabelled.
            assert page.eval_on_selector("#queue .item.selected", "node => node.dataset.id") == shown[2]
            page.keyboard.press("?")
            assert page.is_visible("#help")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    log = LabelLog(labels)
    rows = log.rows()
    assert list(rows["action"]) == ["label", "label", "label", "undo"]
    assert list(rows["galaxy_id"]) == [shown[0], shown[1], shown[2], shown[2]]
    assert set(rows["annotator"]) == {"alice"}
    current = log.current()
    classes = tiny["classes"]
    assert dict(zip(current["galaxy_id"], current["label"])) == {shown[0]: classes[0], shown[1]: classes[1]}
