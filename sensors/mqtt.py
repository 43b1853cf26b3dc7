"""MQTT transport of shelf-controller messages (paho-mqtt 2, MQTT 5): the ingestion worker and a small publisher.

RFID readers publish beside them on ``walkout/<store>/rfid/<reader>/reads`` (:mod:`sensors.rfid`; the worker takes
them when given an ``rfid`` ingestor, same key check and counters). Shelf topic
``walkout/<store code>/shelf/<controller name>/weights`` (:func:`sensors.ingest.weights_topic`), QoS 1,
payload :mod:`sensors.ingest` version 1 carrying the controller's API key in ``key``. The broker may also
authenticate clients (Mosquitto ``password_file`` + ``acl_file`` giving each controller write access to
its own topic only: recommended in production); the worker checks the key whatever the broker does, and a
message whose key does not belong to the controller named by the topic is refused, logged and counted.

:class:`MqttIngestWorker` runs in one process per deployment (``manage.py ingest_mqtt``), in ONE thread: it drives
paho's network loop itself between messages. (A paho network thread beside a busy worker thread convoys on the
GIL: every socket read hands the GIL over and waits up to a switch interval to get it back, so intake fell to
~20 messages/s and the broker's queue for the worker overflowed.) Delivery guarantees:

- a persistent session (MQTT 5 ``clean_start=False``, ``SessionExpiryInterval``, default one day) under a stable
  client id (default ``walkout-ingest-<hash of the subscription>``): the broker keeps the subscription and queues
  QoS 1 messages while the worker is down or restarting, and delivers them when it comes back. Mosquitto bounds
  that queue per client (``max_queued_messages``, default 1000 messages, 40 s of a 5-controller store): raise it
  (and keep ``persistence true``) for longer outages. Two workers with the same id take the session from each
  other: run one per subscription.
- manual acknowledgement: a message is acknowledged (PUBACK) only after it has been handled (fed to the
  detector, its shelf events stored); one received but not handled when the worker stops or dies is delivered
  again. ``ReceiveMaximum`` (default 1000) bounds the messages in flight, so a burst waits in the worker's inbox
  rather than in the broker's queue.
- no input stops the worker: bodies are parsed with :func:`sensors.ingest.parse_json` (bounded size and
  nesting), and anything a message raises is logged, counted (``WorkerStats.errors``) and the message dropped.
"""
from __future__ import annotations

import collections
import functools
import hashlib
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlparse

import paho.mqtt.client as mqtt
from django.db import DatabaseError, close_old_connections
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .ingest import WEIGHTS_SUBSCRIPTION, PayloadError, parse_json, parse_topic
from .rfid import READS_SUBSCRIPTION, parse_reads_topic
from .live import ShelfIngestor
from .models import ShelfController, RfidReader
from .services import controller_key_hash
from .rfid_live import reader_key_hash

log = logging.getLogger(__name__)

#: Seconds the broker keeps the worker's session (subscription and queued messages) after it disconnects.
SESSION_EXPIRY_S = 86_400
#: Most unacknowledged messages the broker sends the worker at once (MQTT 5 Receive Maximum).
RECEIVE_MAXIMUM = 1000


def broker_address(url: str) -> tuple[str, int, str | None, str | None]:
    """``mqtt://[user[:password]@]host[:port]`` → (host, port, username, password). Raises ``ValueError`` for
    another scheme or no host."""
    parsed = urlparse(url)
    if parsed.scheme not in ("mqtt", "tcp") or not parsed.hostname:
        raise ValueError(f"MQTT_URL must look like mqtt://host:1883, got {url!r}")
    return parsed.hostname, parsed.port or 1883, parsed.username, parsed.password


def make_client(url: str, *, client_id: str, manual_ack: bool = False) -> mqtt.Client:
    """A paho-mqtt 2 client (callback API version 2, MQTT 5) for ``url``, not yet connected; ``manual_ack``: QoS 1
    messages are acknowledged only by ``client.ack(mid, qos)``."""
    host, port, user, password = broker_address(url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5,
                         manual_ack=manual_ack)
    if user:
        client.username_pw_set(user, password)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    return client


def default_client_id(subscription: str) -> str:
    """The worker's stable client id for ``subscription``: ``walkout-ingest-<8 hex of its SHA-256>``."""
    return f"walkout-ingest-{hashlib.sha256(subscription.encode()).hexdigest()[:8]}"


@dataclass
class WorkerStats:
    """Totals of one worker run: messages received (delivered by the broker; one delivered again after a reconnect
    counts twice), handled, refused (bad topic or credentials), shelf events,
    errors (messages whose handling raised: logged, counted, dropped), connections (1 + reconnects), and the
    seconds the worker spent handling messages (``busy_s``, wall) and in CPU (``cpu_s``, the process)."""

    received: int = 0
    handled: int = 0
    refused: int = 0
    events: int = 0
    errors: int = 0
    connected: bool = False
    connections: int = 0
    busy_s: float = 0.0
    cpu_s: float = 0.0


class MqttIngestWorker:
    """Subscribe to every controller topic on the broker at ``url`` and feed ``ingestor``.

    ``client_id`` (default :func:`default_client_id`) names the persistent session, kept ``session_expiry_s``
    seconds after a disconnect (0: ends with the connection); ``receive_maximum`` bounds unacknowledged messages in
    flight; ``batch_s`` is given to the ingestor (its database writes once per ``batch_s``). :meth:`run` blocks
    until ``stop`` is set, ``max_seconds`` pass or ``max_messages`` have been handled; it returns the
    :class:`WorkerStats`. Raises ``ConnectionError`` when the broker cannot be reached within
    ``connect_timeout_s``."""

    def __init__(self, *, url: str, ingestor: ShelfIngestor, subscription: str = WEIGHTS_SUBSCRIPTION,
                 client_id: str | None = None, connect_timeout_s: float = 10.0,
                 session_expiry_s: int = SESSION_EXPIRY_S, receive_maximum: int = RECEIVE_MAXIMUM,
                 batch_s: float = 1.0, rfid=None, rfid_subscription: str = READS_SUBSCRIPTION) -> None:
        if not 1 <= receive_maximum <= 65535:
            raise ValueError(f"receive_maximum must be 1 … 65535, got {receive_maximum}")
        self.url = url
        self.ingestor = ingestor
        if batch_s > 0:
            ingestor.batch_s = max(ingestor.batch_s, float(batch_s))
        self.subscription = subscription
        #: RFID readers (``sensors.rfid_live.RfidIngestor``): their topic filter is subscribed beside the shelves'
        self.rfid = rfid
        self.rfid_subscription = rfid_subscription
        self._readers: dict[tuple[str, str], tuple[object, float]] = {}
        self.client_id = client_id or default_client_id(subscription)
        self.connect_timeout_s = connect_timeout_s
        self.session_expiry_s = int(session_expiry_s)
        self.receive_maximum = int(receive_maximum)
        self.stats = WorkerStats()
        self.subscribed = threading.Event()
        self._inbox: collections.deque[tuple[str, bytes, float, int, int]] = collections.deque()
        self._arrived = 0
        self._controllers: dict[tuple[str, str], tuple[ShelfController | None, float]] = {}

    # paho callbacks: they run inside client.loop(), in the worker's thread
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT connect to %s refused: %s", self.url, reason_code)
            return
        self.stats.connected = True
        self.stats.connections += 1
        if self.rfid is not None:
            client.subscribe([(self.subscription, 1), (self.rfid_subscription, 1)])
        else:
            client.subscribe(self.subscription, qos=1)
        log.info("MQTT connected to %s as %s (session %s); subscribing to %s", self.url, self.client_id,
                 "resumed" if flags.session_present else "new", self.subscription)

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if any(rc.is_failure for rc in reason_codes):
            log.error("MQTT subscription to %s refused: %s", self.subscription, reason_codes)
            return
        self.subscribed.set()

    def _on_message(self, client, userdata, message) -> None:
        self._arrived += 1
        self.stats.received += 1
        self._inbox.append((message.topic, message.payload, time.time(), message.mid, message.qos))

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.stats.connected = False
        self.subscribed.clear()
        # messages received but not acknowledged come again on the next connection (new message ids)
        self._inbox.clear()
        if reason_code != 0:
            log.warning("MQTT disconnected from %s (%s); reconnecting", self.url, reason_code)

    # the loop
    def _pump(self, client: mqtt.Client, timeout: float) -> int:
        """Read what the socket holds (waiting up to ``timeout`` s for the first packet); keeps the connection
        alive. Returns paho's result code of the last loop call."""
        arrived = self._arrived
        rc = client.loop(timeout)
        n = 0
        while (rc == mqtt.MQTT_ERR_SUCCESS and self._arrived != arrived
               and len(self._inbox) < self.receive_maximum and n < 2 * self.receive_maximum):
            arrived = self._arrived
            rc = client.loop(0.0)   # one packet per call (paho 2 reads one packet per select)
            n += 1
        return rc

    def _connect_props(self) -> Properties:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.session_expiry_s
        props.ReceiveMaximum = self.receive_maximum
        return props

    def run(self, *, stop: threading.Event | None = None, max_seconds: float | None = None,
            max_messages: int | None = None, idle_exit_s: float | None = None, end_session: bool = False,
            progress=None, progress_s: float = 1.0) -> WorkerStats:
        """Consume until ``stop``, ``max_seconds``, ``max_messages`` handled, or ``idle_exit_s`` without a message
        after the first one. Closes the ingestor (without finishing its pipelines) on the way out; messages not
        handled by then are not acknowledged (the broker keeps them for the next run). ``end_session``: the
        broker forgets the session on the way out (benchmarks, tests). ``progress``: called with the
        :class:`WorkerStats` (``cpu_s`` current) about every ``progress_s`` seconds (a progress line, the bench)."""
        self._progress, self._progress_s = progress, progress_s
        client = make_client(self.url, client_id=self.client_id, manual_ack=True)
        client.on_connect = self._on_connect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.on_disconnect = self._on_disconnect
        host, port, _, _ = broker_address(self.url)
        try:
            client.connect(host, port, keepalive=30, clean_start=False, properties=self._connect_props())
        except OSError as exc:
            raise ConnectionError(f"cannot reach the MQTT broker at {self.url}: {exc}") from None
        self._cpu0 = cpu0 = time.process_time()
        try:
            t_sub = time.monotonic() + self.connect_timeout_s
            while not self.subscribed.is_set():
                if time.monotonic() >= t_sub:
                    raise ConnectionError(f"no subscription on {self.url} within {self.connect_timeout_s:.0f} s")
                if self._pump(client, 0.05) != mqtt.MQTT_ERR_SUCCESS:
                    time.sleep(0.05)
            log.info("MQTT worker subscribed to %s on %s", self.subscription, self.url)
            self._consume(client, stop, max_seconds, max_messages, idle_exit_s)
        finally:
            try:
                self.ingestor.close(finish=False)
            finally:
                self.stats.cpu_s += time.process_time() - cpu0
                if end_session:
                    props = Properties(PacketTypes.DISCONNECT)
                    props.SessionExpiryInterval = 0
                    client.disconnect(properties=props)
                else:
                    client.disconnect()
                client.loop(0.0)
        return self.stats

    def _consume(self, client: mqtt.Client, stop: threading.Event | None, max_seconds: float | None,
                 max_messages: int | None, idle_exit_s: float | None) -> None:
        t_end = None if max_seconds is None else time.monotonic() + max_seconds
        last_msg = None
        next_poll = time.monotonic() + 1.0
        next_progress = time.monotonic()
        retry_at = 0.0
        while True:
            if self._progress is not None and time.monotonic() >= next_progress:
                next_progress = time.monotonic() + self._progress_s
                self._progress(self._stats_now())
            if stop is not None and stop.is_set():
                return
            now = time.monotonic()
            if t_end is not None and now >= t_end:
                return
            if max_messages is not None and self.stats.handled + self.stats.refused >= max_messages:
                return
            if idle_exit_s is not None and last_msg is not None and now - last_msg >= idle_exit_s:
                return
            if now >= next_poll:
                self._safely(self.ingestor.poll, "housekeeping")
                if self.rfid is not None:
                    self._safely(self.rfid.poll, "RFID housekeeping")
                next_poll = now + 1.0
            if not self._inbox:
                rc = self._pump(client, 0.05)
                if rc != mqtt.MQTT_ERR_SUCCESS and now >= retry_at:
                    retry_at = now + 2.0
                    try:
                        client.reconnect()
                    except OSError as exc:
                        log.warning("MQTT reconnect to %s failed: %s", self.url, exc)
                    continue
                if not self._inbox:
                    if rc != mqtt.MQTT_ERR_SUCCESS:
                        time.sleep(0.05)
                    continue
            busy0 = time.monotonic()
            while self._inbox:
                if max_messages is not None and self.stats.handled + self.stats.refused >= max_messages:
                    break
                topic, payload, received, mid, qos = self._inbox.popleft()
                self._safely(functools.partial(self.handle, topic, payload, received), topic)
                if qos > 0:
                    client.ack(mid, qos)   # only now: a message not handled is delivered again
            self._safely(self.ingestor.advance_due, "advance")
            last_msg = time.monotonic()
            self.stats.busy_s += last_msg - busy0
            self._pump(client, 0.0)

    def _stats_now(self) -> WorkerStats:
        from dataclasses import replace

        return replace(self.stats, cpu_s=self.stats.cpu_s + time.process_time() - self._cpu0)

    def _safely(self, fn, what: str) -> None:
        """Run ``fn``; a database error or any other exception is logged and counted, never stops the worker."""
        try:
            fn()
        except DatabaseError:
            # the database went away: log it (the samples of that message may not have reached the detector),
            # reconnect on the next query, go on with the next message
            log.exception("MQTT worker: database error (%s); continuing", what)
            self.stats.errors += 1
            close_old_connections()
        except Exception:  # noqa: BLE001 - no input may stop the worker
            log.exception("MQTT worker: error handling %s; message dropped, continuing", what)
            self.stats.errors += 1
            self.ingestor.stats.problems["internal_error"] = self.ingestor.stats.problems.get("internal_error", 0) + 1

    def handle(self, topic: str, payload: bytes, received_at: float) -> None:
        """Authenticate and feed one message (the worker thread). Never raises for bad input: an unreadable topic
        or an unknown controller is refused and counted under "unknown"; a body that cannot be parsed (too big,
        too deep, not JSON) counts as ``malformed_json`` of the topic's controller. RFID reader topics go to
        :meth:`handle_reads`."""
        if self.rfid is not None and topic.split("/")[2:3] == ["rfid"]:
            return self.handle_reads(topic, payload)
        try:
            store_code, name = parse_topic(topic)
        except ValueError as exc:
            self.stats.refused += 1
            self.ingestor.refuse(controller=None, message=f"MQTT message refused: {exc}")
            return
        controller = self._controller(store_code, name)
        if controller is None:
            self.stats.refused += 1
            self.ingestor.refuse(controller=None, message=f"MQTT message on {topic[:200]}: no active controller "
                                                          f"{name[:100]!r} in store {store_code[:100]!r}; refused")
            return
        try:
            doc = parse_json(payload)
        except PayloadError:
            # unreadable, so its key cannot be checked: counted as malformed for the topic's controller
            outcome = self.ingestor.handle(controller=controller, payload=payload, received_at=received_at)
            self.stats.handled += 1
            self.stats.events += outcome.events
            return
        key = doc.get("key") if isinstance(doc, dict) else None
        if not isinstance(key, str) or len(key) > 200 or controller_key_hash(key) != controller.api_key_hash:
            self.stats.refused += 1
            self.ingestor.refuse(controller=controller, message=f"MQTT message on {topic} with a missing or wrong "
                                                                f"API key; refused")
            return
        outcome = self.ingestor.handle(controller=controller, payload=doc, received_at=received_at)
        self.stats.handled += 1
        self.stats.events += outcome.events

    def handle_reads(self, topic: str, payload: bytes) -> None:
        """Authenticate and use one RFID reader message: the topic names an active reader of that store and the
        payload carries that reader's key (a key of a reader of another store never matches); otherwise refused
        and counted. An unreadable body counts as ``malformed_json`` of the topic's reader."""
        try:
            store_code, name = parse_reads_topic(topic)
        except ValueError as exc:
            self.stats.refused += 1
            self.rfid.refuse(reader=None, message=f"MQTT message refused: {exc}")
            return
        reader = self._reader(store_code, name)
        if reader is None:
            self.stats.refused += 1
            self.rfid.refuse(reader=None, message=f"MQTT message on {topic[:200]}: no active reader {name[:100]!r} "
                                                  f"in store {store_code[:100]!r}; refused")
            return
        try:
            doc = parse_json(payload)
        except PayloadError:
            self.rfid.handle(reader=reader, payload=b"{unreadable")
            self.stats.handled += 1
            return
        key = doc.get("key") if isinstance(doc, dict) else None
        if not isinstance(key, str) or len(key) > 200 or reader_key_hash(key) != reader.api_key_hash:
            self.stats.refused += 1
            self.rfid.refuse(reader=reader, message=f"MQTT message on {topic} with a missing or wrong API key; "
                                                    f"refused")
            return
        self.rfid.handle(reader=reader, payload=doc)
        self.stats.handled += 1

    def _reader(self, store_code: str, name: str):
        """The active reader of the topic (cached as controllers are)."""
        key = (store_code, name)
        cached = self._readers.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < (30.0 if cached[0] is not None else 5.0):
            return cached[0]
        reader = RfidReader.objects.select_related("store").filter(store__code=store_code, name=name,
                                                                   active=True).first()
        if len(self._readers) > 10_000:
            self._readers.clear()
        self._readers[key] = (reader, now)
        return reader

    def _controller(self, store_code: str, name: str) -> ShelfController | None:
        """The active controller of the topic (cached for 30 s, so a deactivation or key rotation takes effect;
        an unknown one for 5 s, so a flood on unknown topics does not query the database per message)."""
        key = (store_code, name)
        cached = self._controllers.get(key)
        now = time.monotonic()
        if cached is not None and now - cached[1] < (30.0 if cached[0] is not None else 5.0):
            return cached[0]
        controller = (ShelfController.objects.select_related("store")
                      .filter(store__code=store_code, name=name, active=True).first())
        if len(self._controllers) > 10_000:
            self._controllers.clear()
        self._controllers[key] = (controller, now)
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
