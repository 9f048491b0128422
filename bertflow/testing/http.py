"""A served app on a real socket, for tests of ``bertflow serve`` and of the
endpoints plugins add to it."""
import socket
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator


def free_port() -> int:
    """A TCP port nothing listens on now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(app: Callable[..., Any], timeout: float = 60.0) -> Iterator[str]:
    """Serve the ASGI ``app`` with uvicorn in a thread on 127.0.0.1 and yield
    its base URL (``http://127.0.0.1:PORT``); stopped on exit."""
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError(f"the test server on port {port} did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout)
