"""MQTT transport of shelf-controller messages (paho-mqtt 2): the ingestion worker and a small publisher.

Topic ``walkout/<store code>/shelf/<controller name>/weights`` (:func:`sensors.ingest.weights_topic`), QoS 1,
payload :mod:`sensors.ingest` version 1 carrying the controller's API key in ``key``. The broker may also
authenticate clients (Mosquitto ``password_file`` + ``acl_file`` giving each controller write access to
its own topic only: recommended in production); the worker checks the key whatever the broker does, and a
message whose key does not belong to the controller named by the topic is refused, logged and counted.

:class:`MqttIngestWorker` runs in one process per deployment (``manage.py ingest_mqtt``): paho's network thread
only queues messages; the worker's own thread decodes, authenticates and feeds :class:`sensors.live.ShelfIngestor`
(the database is used from that one thread).
"""
from __future__ import annotations

import json
import logging
import queue
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from django.db import DatabaseError, close_old_connections

from .ingest import WEIGHTS_SUBSCRIPTION, parse_topic
from .live import ShelfIngestor
from .models import ShelfController
from .services import controller_key_hash

log = logging.getLogger(__name__)


def broker_address(url: str) -> tuple[str, int, str | None, str | None]:
    """``mqtt://[user[:password]@]host[:port]`` → (host, port, username, password). Raises ``ValueError`` for
    another scheme or no host."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ValueError(f"MQTT_URL must look like mqtt://host:1883, got {url!r}")
    return parsed.hostname, parsed.port or 1883, parsed.username, parsed.password


def make_client(url: str, *, client_id: str) -> mqtt.Client:
    """A paho-mqtt 2 client (callback API version 2, MQTT 3.1.1) for ``url``, not yet connected."""
    host, port, user, password = broker_address(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv311,
                         clean_session=True)
    if user:
        client.username_pw_set(user, password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client


@dataclass
class WorkerStats:
    """Totals of one worker run: messages received, handled, refused (bad topic or credentials), shelf events,
    errors (database errors survived)."""

    received: int = 0
    handled: int = 0
    refused: int = 0
    events: int = 0
    errors: int = 0
    connected: bool = False


class MqttIngestWorker:
    """Subscribe to every controller topic on the broker at ``url`` and feed ``ingestor``.

    :meth:`run` blocks until ``stop`` is set, ``max_seconds`` pass or ``max_messages`` have been handled; it
    returns the :class:`WorkerStats`. Raises ``ConnectionError`` when the broker cannot be reached within
    ``connect_timeout_s``."""

    def __init__(self, *, url: str, ingestor: ShelfIngestor, subscription: str = WEIGHTS_SUBSCRIPTION,
                 client_id: str | None = None, connect_timeout_s: float = 10.0) -> None:
        self.url = url
        self.ingestor = ingestor
        self.subscription = subscription
        self.client_id = client_id or f"walkout-ingest-{uuid.uuid4().hex[:8]}"
        self.connect_timeout_s = connect_timeout_s
        self.stats = WorkerStats()
        self.subscribed = threading.Event()
        self._queue: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        self._controllers: dict[tuple[str, str], tuple[ShelfController, float]] = {}

    # paho callbacks (network thread): only queue
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect to %s refused: %s", self.url, reason_code)
            return
        self.stats.connected = True
        client.subscribe(self.subscription, qos=1)
        log.info("MQTT connected to %s; subscribing to %s", self.url, self.subscription)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        self.subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        self._queue.put((message.topic, message.payload, time.time()))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.stats.connected = False
        self.subscribed.clear()
        if reason_code != 0:
            log.warning("MQTT disconnected from %s (%s); paho reconnects", self.url, reason_code)

    def run(self, *, stop: threading.Event | None = None, max_seconds: float | None = None,
            max_messages: int | None = None, idle_exit_s: float | None = None) -> WorkerStats:
        """Consume until ``stop``, ``max_seconds``, ``max_messages`` handled, or ``idle_exit_s`` without a message
        after the first one. Closes the ingestor (without finishing its pipelines) on the way out."""
        client = make_client(self.url, client_id=self.client_id)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        host, port, _, _ = broker_address(self.url)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        try:
            client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the MQTT broker at {self.url}: {exc}") from None
        client.loop_start()
        try:
            if not self.subscribed.wait(self.connect_timeout_s):
                raise ConnectionError(f"no subscription on {self.url} within {self.connect_timeout_s:.0f} s")
            log.info("MQTT worker subscribed to %s on %s", self.subscription, self.url)
            t_end = None if max_seconds is None else time.monotonic() + max_seconds
            last_msg = None
            next_poll = time.monotonic() + 1.0
            while True:
                if stop is not None and stop.is_set():
                    break
                now = time.monotonic()
                if t_end is not None and now >= t_end:
                    break
                if max_messages is not None and self.stats.handled + self.stats.refused >= max_messages:
                    break
                if idle_exit_s is not None and last_msg is not None and now - last_msg >= idle_exit_s:
                    break
                if now >= next_poll:
                    self.ingestor.poll()
                    next_poll = now + 1.0
                try:
                    topic, payload, received = self._queue.get(timeout=0.05)
                except queue.Empty:
                    continue
                last_msg = time.monotonic()
                try:
                    self.handle(topic, payload, received)
                except DatabaseError:
                    # the database went away mid-message: log it (the samples of that message may not have
                    # reached the detector), reconnect on the next query, go on with the next message
                    log.exception("MQTT worker: database error on a message of %s; continuing", topic)
                    self.stats.errors += 1
                    close_old_connections()
        finally:
            client.loop_stop()
            client.disconnect()
            self.ingestor.close(finish=False)
        return self.stats

    def handle(self, topic: str, payload: bytes, received_at: float) -> None:
        """Authenticate and feed one message (the worker thread)."""
        self.stats.received += 1
        try:
            store_code, name = parse_topic(topic)
        except ValueError as exc:
            self.stats.refused += 1
            self.ingestor.refuse(controller=None, message=f"MQTT message refused: {exc}")
            return
        controller = self._controller(store_code, name)
        if controller is None:
            self.stats.refused += 1
            self.ingestor.refuse(controller=None, message=f"MQTT message on {topic}: no active controller "
                                                          f"{name!r} in store {store_code!r}; refused")
            return
        try:
            doc = json.loads(payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = payload  # the stream reports it as malformed_json (after the key check cannot be done)
            key = None
        else:
            key = doc.get("key") if isinstance(doc, dict) else None
        if not isinstance(key, str) or controller_key_hash(key) != controller.api_key_hash:
            if doc is payload:  # unreadable: count it as malformed for that controller, not as a bad key
                outcome = self.ingestor.handle(controller=controller, payload=payload, received_at=received_at)
                self.stats.handled += 1
                self.stats.events += outcome.events
                return
            self.stats.refused += 1
            self.ingestor.refuse(controller=controller, message=f"MQTT message on {topic} with a missing or wrong "
                                                                f"API key; refused")
            return
        outcome = self.ingestor.handle(controller=controller, payload=doc, received_at=received_at)
        self.stats.handled += 1
        self.stats.events += outcome.events

    def _controller(self, store_code: str, name: str) -> ShelfController | None:
        """The active controller of the topic (cached for 30 s, so a deactivation or key rotation takes effect)."""
        key = (store_code, name)
        cached = self._controllers.get(key)
        if cached is not None and time.monotonic() - cached[1] < 30.0:
            return cached[0]
        controller = (ShelfController.objects.select_related("store")
                      .filter(store__code=store_code, name=name, active=True).first())
        if controller is not None:
            # keep the ingestor's state object when nothing changed (it is keyed by pk; same row)
            self._controllers[key] = (controller, time.monotonic())
        else:
            self._controllers.pop(key, None)
        return controller


class Publisher:
    """A minimal QoS-1 publisher (controllers' side, HTTP forwarding, tests, benchmark). Use as a context
    manager; :meth:`publish` returns the paho ``MQTTMessageInfo``. Raises ``ConnectionError`` when the broker
    cannot be reached."""

    def __init__(self, url: str, *, client_id: str | None = None) -> None:
        self.url = url
        self.client = make_client(url, client_id=client_id or f"walkout-pub-{uuid.uuid4().hex[:8]}")
        self._connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: (not rc.is_failure) and self._connected.set()

    def __enter__(self) -> "Publisher":
        host, port, _, _ = broker_address(self.url)
        try:
            self.client.connect(host, port, keepalive=30)
        except OSError as exc:
            raise ConnectionError(f"cannot reach the MQTT broker at {self.url}: {exc}") from None
        self.client.loop_start()
        if not self._connected.wait(10.0):
            self.client.loop_stop()
            raise ConnectionError(f"no CONNACK from {self.url}")
        return self

    def publish(self, topic: str, payload: bytes, *, qos: int = 1):
        self._last = self.client.publish(topic, payload, qos=qos)
        return self._last

    def __exit__(self, *exc) -> None:
        last = getattr(self, "_last", None)
        if last is not None:
            try:
                last.wait_for_publish(timeout=10.0)
            except (RuntimeError, ValueError) as err:
                log.warning("MQTT publisher: last message not acknowledged: %s", err)
        self.client.loop_stop()
        self.client.disconnect()
