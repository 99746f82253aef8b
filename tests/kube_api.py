"""An in-memory Kubernetes API server on 127.0.0.1 (kmock) for the real `kubernetes` client.

No real API server can run here. kmock's KubernetesEmulator stores objects and answers
create, get, list, merge-patch and delete like one; it runs on its own asyncio loop in a
thread, so synchronous code under test (the `kubernetes` client) can talk to it over HTTP.
"""

from __future__ import annotations

import asyncio
import threading

import kmock
from kubernetes import client


class KubeApi:
    """`with KubeApi() as kube:` serves until the block ends; `kube.api_client()` talks to it."""

    def __init__(self) -> None:
        self.url = ""
        self.handler: kmock.KubernetesEmulator | None = None
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="kmock", daemon=True)

    def _run(self) -> None:
        self._loop.run_until_complete(self._serve())

    async def _serve(self) -> None:
        async with kmock.KubernetesEmulator() as handler, kmock.Server(handler) as server:
            self.handler, self.url = handler, str(server.url).rstrip("/")
            self._stop = asyncio.Event()
            self._started.set()
            await self._stop.wait()

    def __enter__(self) -> KubeApi:
        self._thread.start()
        if not self._started.wait(30):
            raise RuntimeError("kmock server did not start")
        return self

    def __exit__(self, *_: object) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)

    def api_client(self) -> client.ApiClient:
        configuration = client.Configuration()
        configuration.host = self.url
        return client.ApiClient(configuration)

    def requests(self) -> list[tuple[str, str, object]]:
        """(method, path, JSON body) of every request served so far, in order."""
        return [(r.method.value, r.url.path, r.data) for r in self.handler]
