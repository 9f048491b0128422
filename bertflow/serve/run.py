"""Run the ``bertflow serve`` app: on uvicorn (this machine, ``--workers N``
processes) or as a Ray Serve deployment with ``--replicas R`` (one app per
replica, the same code).

Why FastAPI on uvicorn: FastAPI gives the OpenAPI page and request models on
Starlette, the ASGI toolkit Ray Serve itself ingests, so one app serves both
engines; uvicorn is the ASGI server with a graceful SIGTERM (it stops
accepting, finishes every accepted request, then runs the app's shutdown,
which drains the batch queue).
"""
import os
import signal
import threading
from dataclasses import asdict, replace
from typing import Optional

from bertflow.errors import BertflowError, Errors, logger
from bertflow.serve.app import ServeSettings, auto_threads, check_at_least, create_app, settings_json

ENGINES = ("local", "ray")
# Idle keep-alive connections are closed after this long: longer than a reverse proxy's or a client
# pool's idle timeout (commonly 60 s), so a client never sends on a connection the server is closing
# (uvicorn's default of 5 s loses the race under load: a request answered with a closed connection).
KEEP_ALIVE_S = 75


def serve(settings: ServeSettings, *, host: str = "127.0.0.1", port: int = 8000, workers: int = 1,
          engine: str = "local", replicas: int = 1, address: Optional[str] = None, log_level: str = "info") -> None:
    """Serve ``settings.model`` until SIGTERM or Ctrl-C."""
    settings.check()
    if engine not in ENGINES:
        raise BertflowError(Errors.E158.format(engine=engine, known=", ".join(ENGINES)))
    check_at_least(("--workers", workers, 1), ("--replicas", replicas, 1), ("--port", port, 0))
    if engine == "ray":
        if workers != 1:
            raise BertflowError(Errors.E157.format(engine="ray", option="--workers", why="use --replicas"))
        return serve_ray(settings, host=host, port=port, replicas=replicas, address=address)
    if replicas != 1 or address is not None:
        raise BertflowError(Errors.E157.format(engine="local", option="--replicas/--address",
                                               why="they are for --engine ray"))
    try:
        import uvicorn
    except ImportError as err:
        raise BertflowError(Errors.E140.format(err=err)) from None
    if workers == 1:
        app = create_app(settings)
        logger.info(f"serving {settings.model} on http://{host}:{port} (OpenAPI page: /docs)")
        uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=KEEP_ALIVE_S)
        return None
    if not settings.threads:  # the cores shared out: each worker's runners on their own
        settings = replace(settings, threads=auto_threads(workers, settings.runners))
    os.environ["BERTFLOW_SERVE_SETTINGS"] = settings_json(settings)  # each worker process builds its app from it
    uvicorn.run("bertflow.serve.app:app_from_environment", factory=True, host=host, port=port, workers=workers,
                log_level=log_level, timeout_keep_alive=KEEP_ALIVE_S)
    return None


def ray_deployment(settings: ServeSettings, replicas: int):
    """The Ray Serve deployment: each replica builds the same app (model loaded
    through the safe gate, warmed up) when it starts."""
    from ray import serve

    @serve.deployment(name="bertflow", num_replicas=replicas)
    @serve.ingress()
    class BertflowReplica:
        def __init__(self, options: dict):
            self.options = options

        def __serve_build_asgi_app__(self):
            return create_app(self.options)

    return BertflowReplica.bind(asdict(settings))


def serve_ray(settings: ServeSettings, *, host: str, port: int, replicas: int, address: Optional[str],
              block: bool = True):
    """Start (or join, with ``address``) Ray, deploy ``replicas`` replicas and
    serve on ``host:port`` until SIGTERM or Ctrl-C; then Ray Serve drains
    the replicas and stops."""
    try:
        import ray
        from ray import serve
    except ImportError as err:
        raise BertflowError(Errors.E140.format(err=f"{err}; Ray Serve: pip install 'bertflow[ray]'")) from None
    env = {}
    if settings.api_key_env:  # the replicas read the key where the server does, from the environment
        env[settings.api_key_env] = settings.api_key()
    started = not ray.is_initialized()
    ray.init(address=address, ignore_reinit_error=True, runtime_env={"env_vars": env} if env else None,
             log_to_driver=False)
    try:
        serve.start(http_options={"host": host, "port": port})
        serve.run(ray_deployment(settings, replicas), name="bertflow", route_prefix="/")
    except BaseException:  # a failed start leaves no Serve application or Ray runtime of ours behind
        serve.shutdown()
        if started:
            ray.shutdown()
        raise
    logger.info(f"serving {settings.model} on http://{host}:{port} with {replicas} Ray Serve replica(s)")
    if not block:
        return serve
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    serve.shutdown()
    ray.shutdown()
    return None
