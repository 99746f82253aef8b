"""An in-memory Kubernetes API server on 127.0.0.1 (kmock) for the real `kubernetes` client,
and FakeKServe, a stand-in for KServe's controller that drives InferenceService status.

No real API server can run here. kmock's KubernetesEmulator stores objects and answers
create, get, list, merge-patch and delete like one; it runs on its own asyncio loop in a
thread, so synchronous code under test (the `kubernetes` client) can talk to it over HTTP.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import kmock
from kubernetes import client

ISVC = ("serving.kserve.io", "v1beta1")
PLURAL = "inferenceservices"


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


class FakeKServe(threading.Thread):
    """Stand-in for KServe's controller + Knative (no cluster here): spec -> revisions -> status.

    Each new storageUri becomes a revision `<name>-predictor-0000N`, ready after DELAY
    seconds when HEALTHY(uri), never otherwise. Traffic follows KServe's canary rules:
    with canaryTrafficPercent the latest ready revision gets that share and the previously
    rolled-out one the rest; without it the latest ready revision gets 100 %.
    """

    def __init__(
        self, api, namespace: str, name: str, healthy: Callable[[str], bool], delay: float = 0.2
    ):
        super().__init__(daemon=True)
        self.api, self.namespace, self.name = api, namespace, name
        self.healthy, self.delay = healthy, delay
        self.revisions: list[tuple[str, str, bool]] = []  # (name, storageUri, ready)
        self.rolled_out: str | None = None
        self.traffic_seen: list[list[dict]] = []
        self.seen: tuple | None = None
        self.stopping = threading.Event()

    def run(self) -> None:
        from kubernetes.client import ApiException

        while not self.stopping.wait(0.02):
            try:
                obj = self.api.get_namespaced_custom_object(*ISVC, self.namespace, PLURAL,
                                                            self.name)  # fmt: skip
            except ApiException:
                continue
            predictor = obj["spec"]["predictor"]
            state = (predictor["model"]["storageUri"], predictor.get("canaryTrafficPercent"))
            if state != self.seen:
                self.seen = state
                time.sleep(self.delay)  # reconciling takes a moment: the old status stays
                self.reconcile(*state)

    def reconcile(self, uri: str, canary: int | None) -> None:
        if not self.revisions or self.revisions[-1][1] != uri:
            name = f"{self.name}-predictor-{len(self.revisions) + 1:05d}"
            self.revisions.append((name, uri, self.healthy(uri)))
        latest, _, latest_ok = self.revisions[-1]
        ready = [r for r, _, ok in self.revisions if ok]
        if latest_ok and canary and self.rolled_out and self.rolled_out != latest:
            traffic = [
                {"revisionName": latest, "percent": canary, "latestRevision": True},
                {"revisionName": self.rolled_out, "percent": 100 - canary, "latestRevision": False},
            ]
        elif ready:
            serving = latest if latest_ok else (self.rolled_out or ready[-1])
            self.rolled_out = serving
            traffic = [{"revisionName": serving, "percent": 100, "latestRevision": latest_ok}]
        else:
            traffic = []
        self.traffic_seen.append(traffic)
        condition = {"type": "Ready", "status": "True" if latest_ok else "False"}
        if not latest_ok:
            condition |= {"reason": "RevisionFailed", "message": f"{latest} failed to start"}
        status = {
            "conditions": [condition],
            "components": {
                "predictor": {
                    "latestCreatedRevision": latest,
                    "latestReadyRevision": ready[-1] if ready else None,
                    "traffic": traffic,
                }
            },
        }
        self.api.patch_namespaced_custom_object_status(*ISVC, self.namespace, PLURAL,
                                                       self.name, {"status": status})  # fmt: skip

    def __enter__(self) -> FakeKServe:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopping.set()
        self.join(5)
