"""Helpers shared by the benchmark scripts (imported from their own folder)."""

from __future__ import annotations

import json
from pathlib import Path

from tuningfork.data.writers import atomic_path


def write_report(results: Path, stem: str, report: dict, markdown: str) -> None:
    """Write ``<stem>.json`` and ``<stem>.md`` atomically and print the table.

    Parameters
    ----------
    results : Path
        Folder of the results, created when missing.
    stem : str
        File name of both outputs, without suffix.
    report : dict
        JSON-serialisable results.
    markdown : str
        The same results as a markdown table.
    """
    results.mkdir(parents=True, exist_ok=True)
    with atomic_path(results / f"{stem}.json") as tmp:
        tmp.write_text(json.dumps(report, indent=2))
    with atomic_path(results / f"{stem}.md") as tmp:
        tmp.write_text(markdown)
    print(markdown)
