"""Screenshots of the explorer for the docs: ``docs/explorer-queue.png`` and ``docs/explorer-galaxy.png``.

Serves a small simulated catalog (the tests' one: GalSim galaxies, an
untrained model, so the probabilities are near uniform) and photographs
the queue and one galaxy page in Debian's headless Chromium::

    .venv/bin/python docs/explorer_screenshots.py
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from test_web_e2e import CHROMIUM, CHROMIUM_ARGS
from web_helpers import free_port, make_catalog, start_server


def main() -> None:
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        tiny = make_catalog(work, n=24)
        port = free_port()
        annotators = [("alice", "token-alice"), ("bob", "token-bob")]
        server = start_server(tiny["catalog"], work / "labels.sqlite", annotators, port)
        try:
            for name, token in annotators:
                for index, galaxy_id in enumerate(tiny["ids"][:4]):
                    label = tiny["classes"][(index + (name == "bob" and index == 2)) % len(tiny["classes"])]
                    httpx.post(f"http://127.0.0.1:{port}/api/labels", json={"id": galaxy_id, "label": label},
                               headers={"Authorization": f"Bearer {token}"}).raise_for_status()
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": 1280, "height": 860})
                page.goto(f"http://127.0.0.1:{port}/?token=token-alice")
                page.wait_for_selector("body[data-ready=true]")
                page.wait_for_load_state("networkidle")
                page.keyboard.press("ArrowRight")
                page.screenshot(path=str(ROOT / "docs" / "explorer-queue.png"))
                page.goto(f"http://127.0.0.1:{port}/galaxy/{tiny['ids'][4]}")
                page.wait_for_selector("body[data-ready=true]")
                page.click("#show-similar")
                page.wait_for_selector("#similar .item")
                page.wait_for_load_state("networkidle")
                page.screenshot(path=str(ROOT / "docs" / "explorer-galaxy.png"))
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)


if __name__ == "__main__":
    main()
