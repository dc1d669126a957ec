"""Run an ASGI app on a real uvicorn server in a background thread, on a free port (tests, benchmarks,
notebooks): `with BackgroundServer(create_app(settings)) as server: ... server.url ...`."""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.types import ASGIApp


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


class BackgroundServer:
    """`tls`: the (certificate, key) files to serve https with."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        tls: tuple[str, str] | None = None,
    ) -> None:
        self.port = port or free_port(host)
        self.url = f"{'https' if tls else 'http'}://{host}:{self.port}"
        certificate, key = tls or (None, None)
        # The app's lifespan runs, as under `retrosearch serve`: the backend is built in the server's loop.
        config = uvicorn.Config(
            app,
            host=host,
            port=self.port,
            log_level="warning",
            lifespan="on",
            ssl_certfile=certificate,
            ssl_keyfile=key,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name=f"uvicorn:{self.port}", daemon=True)

    def __enter__(self) -> BackgroundServer:
        self._thread.start()
        give_up_at = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > give_up_at:
                raise RuntimeError(f"uvicorn on port {self.port} did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=20)
