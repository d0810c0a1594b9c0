"""A real embedkit server on loopback: uvicorn in a thread of the test process (``running``), or the
``embedkit serve`` command in a process of its own (``spawn_server``), for kill -9 and SIGTERM. The tests
import these from here, not from ``conftest``, which names whichever folder's conftest came first."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

pytest.importorskip("fastapi")

import uvicorn  # noqa: E402

from integrations.server import Limits, Service, create_app  # noqa: E402

KEY = "test-key-123"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running(service: Service, api_key: str | None = KEY):
    """Serves ``service`` on a free loopback port; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(create_app(service, api_key=api_key), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@pytest.fixture
def make_service(tiny_model):
    def make(indexes=None, reranker=None, **limits):
        return Service(tiny_model, "tiny", reranker, "tiny-reranker" if reranker else None, indexes, Limits(**limits))

    return make


@pytest.fixture
def client():
    with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {KEY}"}) as c:
        yield c


@contextlib.contextmanager
def spawn_server(args: list[str], env: dict | None = None, command: str = "serve"):
    """``embedkit serve ARGS`` (or another command that serves) in its own process on a free port; yields
    (process, base URL)."""
    port = free_port()
    command = [sys.executable, "-m", "integrations.cli", command, "--port", str(port), "-q", *args]
    process = subprocess.Popen(command, env={**os.environ, **(env or {})}, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise RuntimeError(f"embedkit serve did not start: {process.stderr.read()[-2000:]}")
        time.sleep(0.2)
    try:
        yield process, url
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(30)
