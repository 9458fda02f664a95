"""The hub's web application: JSON API under ``/api/v1`` and server-rendered pages (no JavaScript needed).

    >>> app = create_app(Hub.open("sqlite:///hub.db"), require_token=True)
    >>> # uvicorn.run(app, host="127.0.0.1", port=8000)            (what `assay hub serve` does)

Every error is a JSON body ``{"error": ..., "hint": ...}`` with a 4xx status (pages answer with an HTML error
page instead); bodies above ``max_body`` bytes are refused with 413 before they are read in full.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from assay import __version__
from assay.hub.errors import HubError
from assay.hub.store import PAGE_MAX, TIERS, Hub

API = "/api/v1"


@dataclass(frozen=True)
class BoardQuery:
    """The leaderboard's filters and order, as the API and the page both take them from the query string."""

    task: str | None
    metric: str | None
    base: str | None
    verdict: str | None
    licence: str | None
    tier: str | None
    sort: str
    order: str


def board_query(task: str | None = Query(None, max_length=200), metric: str | None = Query(None, max_length=100),
                base: str | None = Query(None, max_length=200), verdict: str | None = Query(None, max_length=20),
                licence: str | None = Query(None, max_length=200), tier: str | None = Query(None, max_length=20),
                sort: str = Query("delta", max_length=20),
                order: str = Query("desc", pattern="^(asc|desc)$")) -> BoardQuery:
    """FastAPI dependency: one definition of the leaderboard's query parameters and their limits."""
    return BoardQuery(task, metric, base, verdict, licence, tier, sort, order)
MAX_BODY = 16 * 1024 * 1024
"""Default request body limit (an attestation carries the whole vet document, lineage evidence included)."""


def _error(status: int, message: str, hint: str | None = None) -> JSONResponse:
    return JSONResponse({"schema": "assay.hub-error/1", "error": message, "hint": hint}, status_code=status)


def create_app(hub: Hub, *, max_body: int = MAX_BODY) -> FastAPI:
    """The FastAPI application serving ``hub``. Writes always need a bearer token."""
    app = FastAPI(title="assay hub", version=__version__, openapi_url="/openapi.json", docs_url=None,
                  redoc_url=None, description="Signed, reproducible ratings of open-weight checkpoints.")
    app.state.hub = hub

    @app.middleware("http")
    async def server_timing(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        t0 = time.perf_counter()
        response = await call_next(request)
        response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - t0) * 1000:.1f}"
        return response

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.method in ("POST", "PUT", "PATCH"):
            length = request.headers.get("content-length")
            if length is not None:
                if not length.isdigit():
                    return _error(400, "bad Content-Length header")
                if int(length) > max_body:
                    return _error(413, f"request body of {int(length)} bytes is over the hub's limit of {max_body}")
            else:  # chunked: read with a cap, then hand the bytes on
                body = b""
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > max_body:
                        return _error(413, f"request body is over the hub's limit of {max_body} bytes")
                request._body = body  # starlette re-reads it from here
        return await call_next(request)

    @app.exception_handler(HubError)
    async def hub_error(request: Request, exc: HubError) -> Response:
        if request.url.path.startswith(API):
            return _error(exc.status, exc.message, exc.hint)
        return _page_error(exc.status, exc.diagnostics())

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> Response:
        parts = []
        for e in exc.errors()[:5]:
            loc = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "path", "body"))
            parts.append(f"{loc or 'request'}: {e.get('msg', 'invalid')}")
        msg = "; ".join(parts) or "invalid request"
        if request.url.path.startswith(API):
            return _error(422, msg)
        return _page_error(422, msg)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        msg = exc.detail if isinstance(exc.detail, str) else "error"
        if request.url.path.startswith(API) or request.url.path == "/openapi.json":
            return _error(exc.status_code, msg)
        return _page_error(exc.status_code, msg)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:  # a bug: say so, without a traceback
        import logging

        logging.getLogger("assay.hub").exception("internal error on %s", request.url.path)
        if request.url.path.startswith(API):
            return _error(500, f"internal error: {type(exc).__name__}")
        return _page_error(500, f"internal error: {type(exc).__name__}")

    # --------------------------------------------------------------------------------------------- API

    @app.get(f"{API}/models", tags=["models"], summary="List or search models")
    def api_models(q: str | None = Query(None, max_length=200), limit: int = Query(50, ge=1, le=PAGE_MAX),
                   offset: int = Query(0, ge=0, le=10**9)) -> dict[str, Any]:
        return hub.models(q=q, limit=limit, offset=offset)

    @app.get(f"{API}/models/{{ident:path}}/attestations", tags=["models"],
             summary="Every signed attestation of a model")
    def api_attestations(ident: str) -> dict[str, Any]:
        _check_ident(ident)
        return {"schema": "assay.hub-attestations/1", "attestations": hub.attestations(ident)}

    @app.get(f"{API}/models/{{ident:path}}/eval-results", tags=["models"],
             summary="The latest signed vet as Hugging Face .eval_results files and card model-index")
    def api_eval_results(ident: str, request: Request) -> dict[str, Any]:
        _check_ident(ident)
        from assay.hub.interop import eval_results, model_index

        doc = hub.model(ident)
        return {"schema": "assay.hub-eval-results/1", "files": eval_results(doc, hub_url=str(request.base_url)),
                "model_index": model_index(doc, hub_url=str(request.base_url))}

    @app.get(f"{API}/models/{{ident:path}}", tags=["models"], summary="One model by weights root or alias")
    def api_model(ident: str) -> dict[str, Any]:
        _check_ident(ident)
        return hub.model(ident)

    @app.get(f"{API}/leaderboard", tags=["leaderboard"], summary="Latest vet of each model on one task")
    def api_leaderboard(q: Annotated[BoardQuery, Depends(board_query)],
                        limit: int = Query(50, ge=1, le=PAGE_MAX),
                        offset: int = Query(0, ge=0, le=10**9)) -> dict[str, Any]:
        return hub.leaderboard(task=q.task, metric=q.metric, base=q.base, verdict=q.verdict, licence=q.licence,
                               tier=q.tier, sort=q.sort, descending=q.order == "desc", limit=limit, offset=offset)

    @app.post(f"{API}/attestations", tags=["attestations"], status_code=201,
              summary="Publish a DSSE-signed attestation (bearer token required)")
    async def api_publish(request: Request) -> JSONResponse:
        token = _bearer(request)
        if token is None:
            return _error(401, "writes need a bearer token (Authorization: Bearer TOKEN)",
                          "create one with `assay hub token create NAME` on the hub")
        raw = await request.body()
        try:
            envelope = json.loads(raw)
        except (UnicodeDecodeError, ValueError) as exc:
            return _error(400, f"the body is not JSON: {exc}")
        client = request.client.host if request.client else None
        r = hub.publish(envelope, token=token, remote=client)
        return JSONResponse({"schema": "assay.hub-published/1", "model": r.model_id, "attestation": r.attestation,
                             "created_model": r.created_model, "aliases": list(r.aliases), "key": r.key,
                             "reproduces": r.reproduces, "url": f"/models/{r.model_id}"}, status_code=201)

    # ------------------------------------------------------------------------------------------- pages

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page_leaderboard(q: Annotated[BoardQuery, Depends(board_query)],
                         page: int = Query(1, ge=1, le=10**6), per_page: int = Query(25, ge=1, le=PAGE_MAX)) -> str:
        sort, order = q.sort, q.order
        params = {k: v for k, v in dict(task=q.task, metric=q.metric, base=q.base, verdict=q.verdict,
                                        licence=q.licence, tier=q.tier).items() if v}
        board = hub.leaderboard(sort=sort, descending=order == "desc", limit=per_page,
                                offset=(page - 1) * per_page, **params)
        pages = max(1, math.ceil(board["total"] / per_page))

        def link(**over: Any) -> str:
            q = {**params, "sort": sort, "order": order, "page": page, "per_page": per_page, **over}
            return "/?" + urlencode({k: v for k, v in q.items() if v not in (None, "")})

        def sort_link(col: str) -> str:
            return link(sort=col, order="asc" if sort == col and order == "desc" else "desc", page=1)

        return render("leaderboard.html.j2", title="assay hub: leaderboard", board=board, params=params,
                      tasks=hub.tasks(), bases=hub.bases(), licences=hub.licences(), tiers=[t for t, _ in TIERS],
                      verdicts=["PASS", "WARN", "FAIL", "NONE"], sort=sort, order=order, page=page, pages=pages,
                      per_page=per_page, link=link, sort_link=sort_link)

    @app.get("/models/{ident:path}", response_class=HTMLResponse, include_in_schema=False)
    def page_model(ident: str) -> str:
        _check_ident(ident)
        doc = hub.model(ident)
        return render("model.html.j2", title=f"assay hub: {_display(doc)}", m=doc, name=_display(doc),
                      view=_view(doc.get("vet")))

    @app.get("/compare", response_class=HTMLResponse, include_in_schema=False)
    def page_compare(m: Annotated[list[str] | None, Query()] = None) -> str:
        m = m or []
        if not 2 <= len(m) <= 3:
            raise HubError("compare needs two or three models (?m=A&m=B[&m=C])", status=422)
        for ident in m:
            _check_ident(ident)
        docs = [hub.model(ident) for ident in m]
        tasks = sorted({(r["task"], r["metric"]) for d in docs for r in _latest_metrics(d)})
        table = [{"task": t, "metric": mt, "cells": [next((r for r in _latest_metrics(d)
                                                            if (r["task"], r["metric"]) == (t, mt)), None)
                                                       for d in docs]} for t, mt in tasks]
        return render("compare.html.j2", title="assay hub: compare", models=docs,
                      names=[_display(d) for d in docs], table=table,
                      deploy=[_deploy(d.get("vet") or {}) for d in docs])

    @app.get("/family/{ident:path}", response_class=HTMLResponse, include_in_schema=False)
    def page_family(ident: str) -> str:
        _check_ident(ident)
        from assay.hub.lineage import family_tree

        tree = family_tree(hub, ident)
        return render("family.html.j2", title=f"assay hub: family of {tree['name']}", tree=tree)

    @app.get("/search", response_class=HTMLResponse, include_in_schema=False)
    def page_search(q: str = Query("", max_length=200), page: int = Query(1, ge=1, le=10**6)) -> str:
        res = hub.models(q=q or None, limit=50, offset=(page - 1) * 50)
        return render("search.html.j2", title="assay hub: search", q=q, res=res, page=page,
                      pages=max(1, math.ceil(res["total"] / 50)))

    return app


def _bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() or None if scheme.lower() == "bearer" else None


def _check_ident(ident: str) -> None:
    if not ident or len(ident) > 200 or not ident.isprintable():
        raise HubError("a model id is a weights root or a name of 1 to 200 printable characters", status=422)


def _display(doc: dict[str, Any]) -> str:
    return str(doc["aliases"][0]) if doc.get("aliases") else str(doc["id"])[:16]


def _latest_metrics(doc: dict[str, Any]) -> list[dict[str, Any]]:
    vets = [h for h in doc.get("history") or [] if h["kind"] == "vet"]
    return vets[-1]["metrics"] if vets else []


def _view(vet: Any) -> dict[str, Any] | None:
    """The report's own per-model view (charts included), so the hub shows the same figures as `assay report`."""
    if not isinstance(vet, dict):
        return None
    from assay.report.html import model_view

    try:
        return model_view(vet)
    except (KeyError, TypeError, ValueError, AttributeError):  # a vet document from another assay version
        return None


def _deploy(vet: dict[str, Any]) -> dict[str, Any]:
    from assay.hub.attestation import field

    cand, cost, lic = field(field(vet, "bench"), "candidate"), field(vet, "cost"), field(vet, "licence")
    return {"decode": cand.get("decode_tokens_per_s"), "memory": cand.get("model_rss_bytes"),
            "cost": cost.get("self_per_task"), "licence": lic.get("licence")}


def _page_error(status: int, message: str) -> HTMLResponse:
    return HTMLResponse(render("error.html.j2", title=f"assay hub: error {status}", status=status, message=message),
                        status_code=status)


@cache
def _env() -> Any:
    from jinja2 import ChainableUndefined, Environment, PackageLoader, select_autoescape

    from assay.report.base import VERDICT_COLOURS, human_bytes, money, num

    env = Environment(loader=PackageLoader("assay.hub", "templates"), autoescape=select_autoescape(default=True,
                      default_for_string=True), undefined=ChainableUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = num
    env.filters["bytes"] = human_bytes
    env.filters["money"] = money
    env.globals["colours"] = VERDICT_COLOURS
    env.globals["version"] = __version__
    env.globals["short"] = lambda s, n=16: (str(s)[:n] + "…") if s and len(str(s)) > n else (s or "")
    return env


def render(template: str, **context: Any) -> str:
    """Render one of the hub's own templates (never anything that came from a user or a model)."""
    return str(_env().get_template(template).render(**context))
