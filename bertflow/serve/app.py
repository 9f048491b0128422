"""The ``bertflow serve`` application: a trained pipeline behind HTTP (FastAPI).

Endpoints: ``POST /annotate`` (texts through every component, in dynamic
batches across requests; the record shape of ``bertflow annotate``), the
POST endpoints plugins add for this pipeline (``bertflow_serve_endpoints``,
e.g. ``/similarity`` and ``/search`` with a similarity head), ``GET /health``
(the process is alive), ``GET /ready`` (the model is loaded and warmed up and
the server is not shutting down), ``GET /metrics`` (Prometheus text) and the
OpenAPI page ``/docs``.

Bad input is a 4xx with one JSON object ``{"error": {"status", "code",
"message"}}``, never a 500: malformed JSON, a body that is not UTF-8, wrong
types, an empty list, too many texts, a text over the size limit, a lone
surrogate, a question for a pipeline that reads none, an unknown path. A
text that makes a component raise gets its error in its own record; the
rest of the batch is answered.

The pipeline is loaded through bertflow's safe gate (``load_pipeline``); no
endpoint loads anything a request names.
"""
import gc
import hmac
import json
import os
import signal
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from typing import Any, Awaitable, Callable, Dict, List, Optional, Tuple, Union

import pluggy
from spacy.language import Language

from bertflow.errors import BertflowError, Errors
from bertflow.files.loading import load_pipeline
from bertflow.hooks.manager import get_serve_endpoints
from bertflow.inference.annotate import reads_text_pair
from bertflow.serve.batcher import DynamicBatcher, TextItem, run_texts
from bertflow.serve.checks import AnnotateRequest, check_strings, error_body, parse_json, request_items
from bertflow.serve.metrics import ServeMetrics

OPEN_PATHS = ("/health", "/ready")  # probes answer without the API key
# A POST endpoint's work: the request body in, (status, JSON value) out
Answer = Callable[[bytes], Awaitable[Tuple[int, Any]]]
RESERVED = ("annotate", "health", "ready", "metrics", "docs", "redoc", "openapi.json")


def check_at_least(*options: Tuple[str, float, float]) -> None:
    """E151 for the first ``(option, value, least)`` whose value is below its least."""
    for option, value, least in options:
        if value < least:
            raise BertflowError(Errors.E151.format(option=option, least=least, value=value))


@dataclass
class ServeSettings:
    """How ``bertflow serve`` runs; every field is a command-line option."""

    model: str
    max_batch: int = 32
    max_wait_ms: float = 5.0
    max_text_chars: int = 100_000
    max_texts: int = 1_000
    max_body_bytes: int = 10 * 2 ** 20
    api_key_env: Optional[str] = None
    gpu_id: int = -1
    runners: int = 1  # copies of the pipeline, each on its own thread, taking batches from the one queue
    threads: int = 0  # torch threads per runner; 0: the cores shared out (one runner: torch's default)

    def check(self) -> None:
        check_at_least(("--max-batch", self.max_batch, 1), ("--max-wait-ms", self.max_wait_ms, 0),
                       ("--runners", self.runners, 1), ("--threads", self.threads, 0),
                       ("--max-text-chars", self.max_text_chars, 1), ("--max-texts", self.max_texts, 1),
                       ("--max-body-bytes", self.max_body_bytes, 1024))
        self.api_key()

    def api_key(self) -> Optional[str]:
        """The key from ``api_key_env`` (None: no key); read from the environment, never from a flag."""
        if not self.api_key_env:
            return None
        key = os.environ.get(self.api_key_env, "")
        if not key:
            raise BertflowError(Errors.E150.format(var=self.api_key_env))
        return key


def json_error(status: int, message: str, headers: Optional[Dict[str, str]] = None):
    from starlette.responses import JSONResponse

    return JSONResponse(error_body(status, message), status_code=status, headers=headers)


def failed(err: BertflowError) -> Tuple[int, Dict[str, Any]]:
    """The (status, JSON error) that answers a request ``err`` refuses (422 unless it names its status)."""
    status = getattr(err, "status", 422)
    return status, error_body(status, str(err))


async def send_json(send, status: int, value: Any, headers: Tuple[Tuple[bytes, bytes], ...] = ()) -> None:
    """Answer with ``value`` as compact UTF-8 JSON, as Starlette's ``JSONResponse`` writes it."""
    body = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """Outermost ASGI layer: the API key, the body-size limit (the body is read
    here, at most ``max_body`` bytes), per-request metrics, and the POST
    endpoints (``posts``: path -> its ``Answer``) answered from that body
    directly. Those carry the serving load, and each request that went on
    through the framework's middleware and router would cost the event loop
    (whose thread shares the GIL with the model's runners) twice the Python.
    Every other request is handed on to the app, with the body already read."""

    def __init__(self, app, *, api_key: Optional[str], max_body: int, metrics: ServeMetrics, paths: List[str],
                 posts: Dict[str, Answer]):
        self.app, self.api_key, self.max_body, self.metrics, self.paths = app, api_key, max_body, metrics, set(paths)
        self.posts = posts

    def _authorized(self, headers: Dict[bytes, bytes]) -> bool:
        header = headers.get(b"authorization", b"")
        scheme, _, token = header.partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.api_key.encode())

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        status = [500]

        async def send_seen(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        with self.metrics.request(path if path in self.paths else "other", status):
            headers = dict(scope.get("headers") or [])
            if self.api_key and path not in OPEN_PATHS and not self._authorized(headers):
                return await send_json(send_seen, 401, error_body(401, Errors.E148), ((b"www-authenticate", b"Bearer"),))
            body, more = bytearray(), True
            length = headers.get(b"content-length", b"0")
            too_big = length.isdigit() and int(length) > self.max_body
            while more and not too_big:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return None
                body += message.get("body", b"")
                more = message.get("more_body", False)
                too_big = len(body) > self.max_body
            if too_big:
                return await send_json(send_seen, 413, error_body(413, Errors.E147.format(limit=self.max_body)))
            answer = self.posts.get(path) if scope["method"] == "POST" else None
            if answer is not None:
                try:
                    code, value = await answer(bytes(body))
                except Exception as err:  # noqa: BLE001  (a bug, not bad input: still one JSON error)
                    code, value = 500, error_body(500, f"{type(err).__name__}: {err}")
                return await send_json(send_seen, code, value)
            replayed = [False]

            async def replay():
                if replayed[0]:
                    return await receive()  # the disconnect, when it comes
                replayed[0] = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}

            return await self.app(scope, replay, send_seen)


def _install_drain_signal(app) -> None:
    """Readiness turns false the moment SIGTERM arrives (before the server stops
    accepting), then the server's own handler runs: it answers every accepted
    request and exits."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def on_term(signum, frame):
            app.state.draining = True
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread (a Ray Serve replica): Ray drains replicas itself
        pass


def create_app(settings: Union[ServeSettings, Dict[str, Any]], nlp: Optional[Language] = None,
               pm: Optional[pluggy.PluginManager] = None) -> Any:
    """The FastAPI app serving ``settings.model`` (or an already loaded ``nlp``),
    loaded, warmed up and ready when this returns; ``pm``: the plugin manager
    whose ``bertflow_serve_endpoints`` add endpoints (default: the installed plugins).
    Everything the process holds by then is frozen out of the cyclic garbage
    collector (``gc.freeze()``): it lives as long as the server."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.encoders import jsonable_encoder
        from fastapi.exceptions import RequestValidationError
        from starlette.exceptions import HTTPException
        from starlette.responses import JSONResponse, PlainTextResponse
    except ImportError as err:
        raise BertflowError(Errors.E140.format(err=err)) from None
    if isinstance(settings, dict):
        settings = ServeSettings(**settings)
    settings.check()
    threads = settings.threads or auto_threads(1, settings.runners)
    if threads:
        import torch

        torch.set_num_threads(threads)
    nlp = nlp if nlp is not None else load_pipeline(settings.model, settings.gpu_id)
    copies = [load_pipeline(settings.model, settings.gpu_id) for _ in range(settings.runners - 1)]
    use_pairs = reads_text_pair(nlp)
    extra = get_serve_endpoints(nlp, pm)
    taken = sorted(set(extra) & set(RESERVED))
    if taken:
        raise BertflowError(Errors.E005.format(kind="serve endpoint", name=taken[0], first="bertflow",
                                               second="a plugin"))
    metrics = ServeMetrics()
    batcher = DynamicBatcher([nlp, *copies], max_batch=settings.max_batch, max_wait_ms=settings.max_wait_ms,
                             use_pairs=use_pairs, observe=metrics.batch)
    metrics.watch_queue(lambda: batcher.depth)
    for each in (nlp, *copies):
        run_texts(each, [TextItem("Warm up the pipeline.", "What?" if use_pairs else None)], use_pairs=use_pairs)
    # What is loaded now lives as long as the server: kept out of the cyclic collector, whose full passes
    # would otherwise walk the pipelines' objects (half a million for minilm-l6 and three heads, about
    # 0.2 s with the GIL held) every few seconds under load, a pause every request in flight waits through.
    gc.collect()
    gc.freeze()

    @asynccontextmanager
    async def lifespan(app):
        _install_drain_signal(app)
        yield
        app.state.draining = True
        await batcher.drain()
        batcher.close()

    meta = nlp.meta
    app = FastAPI(title=f"bertflow serve: {meta.get('lang', '')}_{meta.get('name', 'pipeline')}",
                  version=str(meta.get("version", "")), lifespan=lifespan,
                  description=f"Components: {', '.join(nlp.pipe_names)}.")
    app.state.draining = False
    app.state.nlp, app.state.batcher, app.state.metrics = nlp, batcher, metrics

    @app.exception_handler(RequestValidationError)
    async def on_validation(request, exc):
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": str(exc)}
        return json_error(422, Errors.E154.format(where=".".join(map(str, first["loc"])) or "body", msg=first["msg"]))

    @app.exception_handler(HTTPException)
    async def on_http(request, exc):
        if exc.status_code in (404, 405):
            return json_error(exc.status_code, Errors.E156.format(method=request.method, path=request.url.path,
                                                                  endpoints=", ".join(endpoints)))
        return json_error(exc.status_code, str(exc.detail))

    @app.exception_handler(Exception)
    async def on_error(request, exc):  # a bug, not bad input: still one JSON error
        return json_error(500, f"{type(exc).__name__}: {exc}")

    def read_payload(body: bytes) -> Any:
        payload = parse_json(body)
        check_strings(payload, max_texts=settings.max_texts, max_chars=settings.max_text_chars)
        return payload

    async def annotate(body: bytes) -> Tuple[int, Any]:
        try:
            items, single, vectors = request_items(read_payload(body), use_pairs=use_pairs)
        except BertflowError as err:
            return failed(err)
        records = await batcher.annotate(items, vectors=vectors)
        metrics.texts(records)
        return 200, records[0] if single else {"records": records}  # plain JSON values already

    def plugin_answer(spec) -> Answer:
        handle = spec.handler()

        async def answer(body: bytes) -> Tuple[int, Any]:
            try:
                payload = read_payload(body)
                if not isinstance(payload, dict):
                    raise BertflowError(Errors.E154.format(where="body", msg="expected a JSON object"))
                return 200, jsonable_encoder(await batcher.call(lambda: handle(nlp, payload)))
            except BertflowError as err:
                return failed(err)

        return answer

    posts: Dict[str, Answer] = {"/annotate": annotate, **{f"/{n}": plugin_answer(spec) for n, spec in extra.items()}}

    def route(answer: Answer):
        # The Guard answers these POSTs itself; the routes give them their OpenAPI entries
        async def endpoint(request: Request):
            status, value = await answer(await request.body())
            return JSONResponse(value, status_code=status)

        return endpoint

    app.add_api_route("/annotate", route(annotate), methods=["POST"],
                      summary="Annotate one text or a list, with every component of the pipeline",
                      openapi_extra={"requestBody": {"required": True, "content": {"application/json": {
                          "schema": AnnotateRequest.openapi_schema(),
                          "example": {"texts": ["Apple is looking at buying a U.K. startup.",
                                                {"text": "...", "id": 7}]}}}}})
    for name, spec in extra.items():
        app.add_api_route(f"/{name}", route(posts[f"/{name}"]), methods=["POST"], summary=spec.description or name,
                          openapi_extra={"requestBody": {"required": True, "content": {
                              "application/json": {"schema": {"type": "object"}, "example": spec.example}}}})

    @app.get("/health", summary="The server process is alive")
    async def health():
        return {"status": "alive"}

    @app.get("/ready", summary="The model is loaded and warmed up, and the server takes requests")
    async def ready():
        if app.state.draining:
            return json_error(503, Errors.E149)
        return {"ready": True, "model": f"{meta.get('lang', '')}_{meta.get('name', '')}",
                "version": meta.get("version"), "components": nlp.pipe_names, "pid": os.getpid(),
                "runners": len(batcher.runners), "threads": torch_threads()}

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics_page():
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    endpoints = ["POST /annotate", *(f"POST /{n}" for n in extra), "GET /health", "GET /ready", "GET /metrics"]
    paths = ["/annotate", *(f"/{n}" for n in extra), "/health", "/ready", "/metrics", "/docs", "/openapi.json"]
    app.add_middleware(Guard, api_key=settings.api_key(), max_body=settings.max_body_bytes, metrics=metrics,
                       paths=paths, posts=posts)
    app.state.settings = settings
    return app


def auto_threads(workers: int, runners: int) -> int:
    """Torch threads per runner when the user gives none: this machine's cores shared out among
    ``workers`` × ``runners`` copies of the model; 0 (torch's default, every core) for one copy."""
    copies = workers * runners
    return max(1, len(os.sched_getaffinity(0)) // copies) if copies > 1 else 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def app_from_environment():
    """The app for a uvicorn worker process (``--workers N``): its settings come
    as JSON in ``BERTFLOW_SERVE_SETTINGS``, which ``bertflow serve`` sets."""
    return create_app(json.loads(os.environ["BERTFLOW_SERVE_SETTINGS"]))


def settings_json(settings: ServeSettings) -> str:
    return json.dumps(asdict(settings))
