"""The emulator's transports: how its devices reach a running Walkout. :class:`LocalTransport` posts to this
process's Django (the embedded profile); :class:`RemoteTransport` posts to daphne over HTTP and publishes the shelf
controllers' blocks to the MQTT broker (production), sending the tracker's observations from a background thread and
the exit scans from the gate's own, so that the devices never wait for the store's answers. Errors are
:class:`EmulatorError` sentences, no traceback.
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor

from sensors.mqtt import Publisher
from sensors.ingest import weights_topic




log = logging.getLogger(__name__)


class EmulatorError(RuntimeError):
    """The emulation could not run (a device was refused, the store never settled); the message says why."""


class LocalTransport:
    """Requests to this process's Django (embedded profile), through the test client."""

    #: The controller's key goes in the shelf payload (MQTT) rather than an Authorization header (HTTP).
    key_in_payload = False

    def __init__(self) -> None:
        from django.test import Client

        self.client = Client()

    def post(self, path: str, body: bytes, auth: str) -> tuple[int, dict]:
        r = self.client.post(path, data=body, content_type="application/json", HTTP_AUTHORIZATION=auth)
        try:
            return r.status_code, json.loads(r.content or b"{}")
        except ValueError:
            return r.status_code, {"raw": r.content[:200].decode(errors="replace")}

    def post_soon(self, path: str, body: bytes, auth: str) -> Future:
        """:meth:`post`, here and now (the embedded store loop steps between the devices' batches, so nothing waits
        on another thread), its answer given as a done future like :meth:`RemoteTransport.post_soon`'s."""
        answer: Future = Future()
        try:
            answer.set_result(self.post(path, body, auth))
        except EmulatorError as exc:
            answer.set_exception(exc)
        return answer

    def shelf(self, *, store: str, controller: str, key: str, payload: bytes) -> None:
        status, body = self.post("/sensors/api/weights/", payload, f"Controller {key}")
        if status >= 400:
            raise EmulatorError(f"controller {controller}: the weights API answered {status}: {body}")

    def close(self) -> None:
        pass


class RemoteTransport:
    """Requests to a running Walkout at ``url`` (daphne) and shelf blocks over MQTT at ``mqtt_url``. Raises
    :class:`EmulatorError` (a sentence, no traceback) when ``mqtt_url`` is empty or malformed, or the broker or the
    site cannot be reached."""

    key_in_payload = True

    def __init__(self, url: str, mqtt_url: str) -> None:
        import requests

        if not url.startswith(("http://", "https://")):
            raise EmulatorError(f"--url must be the running Walkout's address, e.g. http://127.0.0.1:8000, "
                                f"not {url!r}")
        if not mqtt_url:
            raise EmulatorError("--url needs MQTT_URL (e.g. MQTT_URL=mqtt://127.0.0.1:1883): the shelf controllers "
                                "publish their blocks to the deployment's MQTT broker, which ingest_mqtt reads")
        self.url = url.rstrip("/")
        self.session = requests.Session()
        self._sender = None  # the background thread of post_later, started at its first use
        self._gate: ThreadPoolExecutor | None = None  # the gate's thread (post_soon), started at its first use
        self._gate_session = requests.Session()  # used by that thread alone (a Session is not shared across threads)
        self._gate_failed: str | None = None  # why a post_soon could not reach the site (the rest then fail at once)
        self._queue = None
        self.failed: str | None = None  # why a post_later failed (raised at the next one, or at close)
        try:
            self.mqtt = Publisher(mqtt_url, client_id=f"walkout-emulator-{int(time.time())}").__enter__()
        except (ValueError, ConnectionError) as exc:
            raise EmulatorError(f"the shelf controllers cannot publish: {exc} (is the MQTT broker running, and "
                                "MQTT_URL right?)") from None

    def post(self, path: str, body: bytes, auth: str, *, session=None) -> tuple[int, dict]:
        """POST ``body`` (JSON) to ``path`` with ``auth`` and return (status, answer); ``session``: the requests
        Session to send it with (default this thread's, :attr:`session`)."""
        import requests

        try:
            r = (session or self.session).post(self.url + path, data=body, timeout=30,
                                               headers={"Authorization": auth, "Content-Type": "application/json"})
        except requests.RequestException as exc:
            raise EmulatorError(f"{self.url} did not answer {path} ({type(exc).__name__}); is daphne running "
                                "there?") from None
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, {"raw": r.text[:200]}

    def shelf(self, *, store: str, controller: str, key: str, payload: bytes) -> None:
        self.mqtt.publish(weights_topic(store, controller), payload)  # encoded with its key (key_in_payload)

    def post_later(self, path: str, body: bytes, auth: str) -> None:
        """Queue a POST whose answer the devices need not wait for (the tracker's observations: a tracker goes on
        seeing people while the store answers), sent in order by one background thread. A refusal or an
        unreachable site is raised by the next :meth:`post_later` as :class:`EmulatorError`, and kept in
        :attr:`failed` (the emulation checks it after :meth:`close`, which sends what is queued)."""
        if self.failed is not None:
            raise EmulatorError(self.failed)
        if self._sender is None:
            import queue
            import threading

            self._queue = queue.Queue(maxsize=1000)  # ~3 min of 5 posts a second: a store gone for good stops it
            self._sender = threading.Thread(target=self._send, name="emulator-tracker", daemon=True)
            self._sender.start()
        self._queue.put((path, body, auth))

    def post_soon(self, path: str, body: bytes, auth: str) -> Future:
        """POST from the gate's own thread, in the order asked, and return the answer's future (``(status, dict)``, or
        :class:`EmulatorError` when the site cannot be reached): a real gate does not hold up the shelf controllers
        and the tracker while the store answers its scan. At 200 shoppers' exodus the exit scans, 15 a second each
        waiting for daphne, held every other device of the emulator back by over a second. Once one could not reach
        the site, those after it fail with the same error unsent: a site that times out must not hold :meth:`close`
        for a timeout per scan queued meanwhile."""
        if self._gate is None:
            self._gate = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emulator-gate")
        return self._gate.submit(self._gate_post, path, body, auth)

    def _gate_post(self, path: str, body: bytes, auth: str) -> tuple[int, dict]:
        """One scan of :meth:`post_soon`, on the gate's thread (the only one touching :attr:`_gate_failed`)."""
        if self._gate_failed is not None:
            raise EmulatorError(self._gate_failed)
        try:
            return self.post(path, body, auth, session=self._gate_session)
        except EmulatorError as exc:
            self._gate_failed = str(exc)
            raise

    def _send(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self.failed is None:
                    status, answer = self.post(*item)
                    if status >= 400:
                        self.failed = f"{item[0]} answered {status}: {answer}"
            except EmulatorError as exc:
                self.failed = str(exc)
            finally:
                self._queue.task_done()

    def close(self) -> None:
        if self._gate is not None:  # the scans asked are sent
            self._gate.shutdown(wait=True)
            self._gate = None
        if self._sender is not None:
            self._queue.put(None)
            self._sender.join(60)
            self._sender = None
        self.mqtt.__exit__(None, None, None)
