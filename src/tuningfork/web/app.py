"""The explorer's FastAPI application: pages, the JSON API, PNG images.

The pages are static files of this package (no CDN: the explorer works
offline) that call the same JSON API a script would:

``GET /api/meta``
    Classes, label keys, filter menus; with a token, the annotator's name.
``GET /api/queue``
    Galaxies in expert-priority order, filtered and paged.
``GET /api/galaxy/{id}``
    One galaxy's catalog values (probabilities, vote fractions,
    morphometry, cluster group); ``/image.png`` its pixels;
    ``/similar`` its nearest neighbours.
``GET /api/search``
    By id (``q``) or by position (``ra``, ``dec``, ``radius``).
``POST /api/labels``
    ``{"id": ..., "label": ...}`` (or ``"action": "skip"``); ``POST
    /api/labels/undo`` cancels the annotator's last label.
``GET /api/labels``
    Export: ``kind=consensus|annotators|log``, ``format=json|csv|parquet``.
``GET /api/agreement``
    Cohen's / Fleiss' kappa and the galaxies annotators disagree on.

Every write needs ``Authorization: Bearer TOKEN``; the token names the
annotator, so a label always records who gave it.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints'
# annotations at run time, and they name classes of this module's imports.
import io
import math
import secrets
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import Body, Depends, FastAPI, Header, HTTPException, Query, Response
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from ..data.labels import EXPORT_KINDS, LabelLog, agreement, consensus_labels, disagreements
from ..errors import TuningforkError
from .catalog import ExplorerCatalog, GalaxyNotFound
from .images import DISPLAY_STRETCHES, render_png

STATIC = resources.files("tuningfork.web") / "static"
#: Galaxies per queue page at most.
MAX_PAGE = 500
PAGES = {"/": "queue.html", "/disagreements": "disagreements.html"}


def create_app(
    catalog: str | Path | ExplorerCatalog,
    labels: str | Path = "labels.sqlite",
    tokens: dict[str, str] | None = None,
    *,
    data: str | Path | None = None,
    data_root: str | Path | None = None,
    class_names: list[str] | None = None,
):
    """Build the explorer's FastAPI application.

    Parameters
    ----------
    catalog : str, Path or ExplorerCatalog
        A catalog folder or predictions Parquet (read, never written).
    labels : str or Path
        The label database; created when missing.
    tokens : dict of str to str
        Token -> annotator name.  Without tokens, every write is refused.
    data, data_root, class_names : optional
        See :class:`~tuningfork.web.catalog.ExplorerCatalog`.

    Returns
    -------
    fastapi.FastAPI
    """
    explorer = catalog if isinstance(catalog, ExplorerCatalog) else ExplorerCatalog(
        catalog, data=data, data_root=data_root, class_names=class_names)
    log = LabelLog(labels)
    tokens = dict(tokens or {})
    allowed = {choice["label"] for choice in explorer.label_choices}
    app = FastAPI(title="tuningfork explorer", docs_url="/api/docs", openapi_url="/api/openapi.json",
                  redoc_url=None)
    app.state.catalog, app.state.labels = explorer, log

    def _annotator_of(authorization: str | None) -> str | None:
        if not authorization or not authorization.startswith("Bearer "):
            return None
        given = authorization[len("Bearer "):].strip().encode()
        # Every token is compared, in constant time, so timing tells nothing.
        found = None
        for token, name in tokens.items():
            if secrets.compare_digest(given, token.encode()):
                found = name
        return found

    def writer(authorization: Annotated[str | None, Header()] = None) -> str:
        annotator = _annotator_of(authorization)
        if annotator is None:
            raise HTTPException(401, "a valid 'Authorization: Bearer TOKEN' header is needed to write",
                                headers={"WWW-Authenticate": "Bearer"})
        return annotator

    def reader(authorization: Annotated[str | None, Header()] = None) -> str | None:
        return _annotator_of(authorization)

    @app.exception_handler(GalaxyNotFound)
    def _not_found(request, error):
        return JSONResponse({"detail": str(error)}, status_code=404)

    @app.exception_handler(TuningforkError)
    def _bad_request(request, error):
        return JSONResponse({"detail": str(error)}, status_code=400)

    # ------------------------------------------------------------------ pages
    for route, page in PAGES.items():
        app.add_api_route(route, _page(page), include_in_schema=False)
    app.add_api_route("/galaxy/{galaxy_id}", _page("galaxy.html"), include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    # -------------------------------------------------------------------- API
    @app.get("/api/meta")
    def meta(annotator: Annotated[str | None, Depends(reader)] = None):
        return {"catalog": str(explorer.path), "galaxies": len(explorer), "labels": explorer.label_choices,
                "annotator": annotator, "stretches": list(DISPLAY_STRETCHES),
                "filters": {"predicted_class": explorer.distinct("predicted_class"),
                            "triage": explorer.distinct("triage"),
                            "group": explorer.distinct(explorer.roles.group),
                            "outlier_score": explorer.roles.outlier is not None}}

    @app.get("/api/queue")
    def queue(
        annotator: Annotated[str | None, Depends(reader)] = None,
        predicted_class: str | None = None, triage: str | None = None, group: str | None = None,
        min_confidence: float | None = None, max_confidence: float | None = None,
        min_outlier: float | None = None, max_outlier: float | None = None,
        unlabelled: bool = False,
        offset: Annotated[int, Query(ge=0)] = 0, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 60,
    ):
        mine = _current_of(log, annotator)
        rows = explorer.filtered(predicted_class=predicted_class, triage=triage, group=group,
                                 min_confidence=min_confidence, max_confidence=max_confidence,
                                 min_outlier=min_outlier, max_outlier=max_outlier,
                                 exclude=set(mine) if unlabelled else ())
        items = explorer.summary(rows[offset: offset + limit])
        for item in items:
            item["my_label"] = mine.get(item["id"])
        return {"total": len(rows), "offset": offset, "limit": limit, "items": items}

    @app.get("/api/galaxy/{galaxy_id}")
    def galaxy(galaxy_id: str, annotator: Annotated[str | None, Depends(reader)] = None):
        record = explorer.galaxy(galaxy_id)
        try:
            record["bands"] = int(explorer.image(galaxy_id).shape[0])
        except GalaxyNotFound:
            record["bands"] = 0
        record["my_label"] = _current_of(log, annotator).get(galaxy_id)
        return record

    @app.get("/api/galaxy/{galaxy_id}/image.png")
    def image(galaxy_id: str, stretch: str = "asinh", bands: str | None = None, invert: bool = False):
        chosen = None
        if bands not in (None, ""):
            try:
                chosen = [int(band) for band in bands.split(",")]
            except ValueError:
                raise HTTPException(400, f"bands must be comma-separated integers, got {bands!r}") from None
        png = render_png(explorer.image(galaxy_id), stretch, chosen, invert)
        return Response(png, media_type="image/png", headers={"Cache-Control": "max-age=3600"})

    @app.get("/api/galaxy/{galaxy_id}/similar")
    def similar(galaxy_id: str, k: Annotated[int, Query(ge=1, le=50)] = 8):
        return {"id": galaxy_id, "items": explorer.similar(galaxy_id, k)}

    @app.get("/api/search")
    def search(q: str | None = None, ra: float | None = None, dec: float | None = None,
               radius: Annotated[float, Query(gt=0, description="arcseconds")] = 10.0):
        return {"items": explorer.search(q, ra, dec, radius)}

    @app.post("/api/labels")
    def post_label(payload: Annotated[dict, Body()], annotator: Annotated[str, Depends(writer)]):
        galaxy_id = str(payload.get("id", ""))
        action = payload.get("action", "label")
        label = payload.get("label")
        row = explorer.row(galaxy_id)
        if action not in ("label", "skip"):
            raise HTTPException(400, f"action must be 'label' or 'skip', got {action!r}")
        if action == "label" and label not in allowed:
            raise HTTPException(400, f"label must be one of {sorted(allowed)}, got {label!r}")
        values = explorer.frame.iloc[row]
        predicted = str(values["predicted_class"]) if "predicted_class" in explorer.frame.columns else None
        confidence = float(values["confidence"]) if "confidence" in explorer.frame.columns else None
        return log.append(galaxy_id, label, annotator, action=action, predicted_class=predicted,
                          confidence=confidence)

    @app.post("/api/labels/undo")
    def undo(annotator: Annotated[str, Depends(writer)]):
        return {"undone": log.undo(annotator)}

    @app.get("/api/labels")
    def export(kind: str = "consensus", format: str = "json", annotator: str | None = None):
        if kind not in EXPORT_KINDS:
            raise HTTPException(400, f"kind must be one of {', '.join(EXPORT_KINDS)}")
        frame = log.export_table(kind, [annotator] if annotator and kind != "log" else None)
        if format == "json":
            return JSONResponse(_records(frame))
        if format == "csv":
            return Response(frame.to_csv(index=False), media_type="text/csv",
                            headers={"Content-Disposition": f'attachment; filename="labels-{kind}.csv"'})
        if format == "parquet":
            buffer = io.BytesIO()
            frame.to_parquet(buffer, index=False)
            return Response(buffer.getvalue(), media_type="application/vnd.apache.parquet",
                            headers={"Content-Disposition": f'attachment; filename="labels-{kind}.parquet"'})
        raise HTTPException(400, "format must be json, csv or parquet")

    @app.get("/api/agreement")
    def kappa():
        current = log.current()
        summary = agreement(current)
        disputed = disagreements(current)
        summary["disagreements"] = _records(disputed)
        summary["consensus_count"] = int(consensus_labels(current)["label"].notna().sum())
        return JSONResponse(_finite(summary))

    return app


def _page(name: str):
    def page():
        return FileResponse(str(STATIC / name), media_type="text/html")

    return page


def _current_of(log: LabelLog, annotator: str | None) -> dict:
    if annotator is None:
        return {}
    current = log.current([annotator])
    return dict(zip(current["galaxy_id"], current["label"]))


def _finite(value):
    """JSON has no NaN: undefined numbers (a kappa of one category) become null."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _records(frame) -> list[dict]:
    import json

    # pandas writes NaN and missing integers as null, which the stdlib encoder would not.
    return json.loads(frame.to_json(orient="records"))

