"""How producers reach the store worker (:class:`carts.runtime.StoreWorker`): publishing records on the store's
streams, the embedded profile's in-process workers, and the hooks that route gate scans, shelf blocks, tag events and
observations onto the streams.

Producers never call the worker: they :func:`publish` a record (``carts.records``) on one of the store's streams
(``carts.bus``), and the worker reads it. :class:`BusShelfSink` and :class:`BusTagSink` are the ingestors' sinks when
the store loop is on (:func:`store_loop_enabled`; ``default_*_sink`` pick them, ``carts.apps`` installs them), and
:func:`on_visit_admitted` / :func:`on_visit_exit_scanned` turn the gates' signals into ``gate`` records. In the
embedded profile there is no ``run_store`` process: :func:`local_worker` starts the store's worker as a thread of the
publishing process on first use, or a caller drives its own (:func:`register_local`). Kept apart from
:mod:`carts.runtime` so that the worker's module is the worker alone.
"""
from __future__ import annotations

import logging
import threading

from django.conf import settings
from django.db import close_old_connections

from store.recording import TrackObservations

from .bus import bus, bus_forget
from .camera_join import cam_record
from .records import gate_record, obs_record, shelf_record, tag_record
from .runtime import StoreWorker

log = logging.getLogger("carts.runtime")  # logged under the store runtime's name, as before the split


def bus_reset() -> None:
    """Forget the process-wide bus and local workers (tests)."""
    for worker, thread in list(_local.values()):
        worker.stop.set()
        if thread is not None:
            thread.join(10)
    _local.clear()
    bus_forget()


_local: dict[str, tuple[StoreWorker, threading.Thread]] = {}
_local_lock = threading.Lock()


def local_worker(store_code: str) -> StoreWorker | None:
    """Embedded profile: the store worker of ``store_code`` in this process — one a caller registered
    (:func:`register_local`: the emulator drives its own), else a thread started on first use (devices posting
    to the embedded server). None in the production profile, where ``run_store`` runs it."""
    if getattr(settings, "PRODUCTION", False):
        return None
    with _local_lock:
        entry = _local.get(store_code)
        if entry is None or (entry[1] is not None and not entry[1].is_alive()):
            worker = StoreWorker(store_code)
            thread = threading.Thread(target=_run_local, args=(worker,), name=f"store-{store_code}", daemon=True)
            _local[store_code] = (worker, thread)
            thread.start()
            entry = _local[store_code]
        return entry[0]


def register_local(store_code: str, worker: StoreWorker | None, *, stop_timeout_s: float = 30.0) -> None:
    """Embedded profile: ``worker`` is this process's store worker of ``store_code``, driven by its caller
    (``worker.step()`` after each batch it publishes) instead of a thread: deterministic (``worker.driven`` is set:
    the time of its own steps is not its sources' silence), and its cart pushes happen on the caller's thread (the
    server's event loop for the dashboard's live emulation). A worker thread
    already running for the store (devices posting to the served site started it) is stopped first, up to
    ``stop_timeout_s`` s: it checkpoints on the way out, so ``worker`` resumes where it left off and no record is
    applied by two loops. Raises ``RuntimeError`` when that thread does not stop in time."""
    if worker is not None:
        worker.driven = True
    with _local_lock:
        old = _local.get(store_code)
        _local[store_code] = (worker, None)
    if old is not None and old[1] is not None and old[1].is_alive():
        old[0].stop.set()
        old[1].join(stop_timeout_s)
        if old[1].is_alive():
            raise RuntimeError(f"store {store_code}: its running store loop did not stop within {stop_timeout_s:g} s")


def unregister_local(store_code: str) -> None:
    """Forget the in-process loop of ``store_code`` (the embedded profile's registry; no-op when absent)."""
    with _local_lock:
        _local.pop(store_code, None)


def _run_local(worker: StoreWorker) -> None:
    try:
        worker.run()
    except Exception:  # the thread must report, not vanish
        log.exception("store %s: local worker stopped", worker.store.code)
    finally:
        close_old_connections()


def publish(store_code: str, kind: str, record: dict) -> str:
    """Publish ``record`` on the store's ``kind`` stream (embedded: and make sure the local worker runs)."""
    sid = bus().publish(store_code, kind, record)
    local_worker(store_code)
    return sid


class BusShelfSink:
    """``sensors.live.ShelfSink`` that publishes validated sample blocks on the store's ``shelf`` stream for the
    store worker, instead of running detection in the ingestion process."""

    def on_samples(self, *, store, bin_codes, t, grams, rate_hz, controller: str = "") -> int:
        publish(store.code, "shelf", shelf_record(controller=controller or ",".join(bin_codes[:1]),
                                                  bin_codes=tuple(bin_codes), t=t, grams=grams, rate_hz=rate_hz))
        return 0

    def advance(self, *, store, now: float) -> int:
        return 0

    def finish(self, *, store) -> int:
        return 0


class BusTagSink:
    """``sensors.rfid_live.TagSink`` that publishes tag events on the store's ``tag`` stream for the store worker."""

    def on_tags(self, *, store, reader: str, events: list, t_last: float) -> None:
        if events:
            publish(store.code, "tag", tag_record(reader=reader, events=events, t_last=t_last))


def default_tag_sink() -> BusTagSink | None:
    """The RFID ingestors' default sink (``sensors.rfid_live.set_default_tag_sink_factory``): the store loop's tag
    stream when the loop is on, else None (tags and tag events are recorded, the receipt does not use them)."""
    return BusTagSink() if store_loop_enabled() else None


def default_shelf_sink(session: str):
    """The ingestors' default sink (``sensors.live.set_default_sink_factory``): the store loop's shelf streams
    when the loop is on, else a ``carts.pipeline.PipelineSink`` of ``session`` (ingestion runs detection and fusion
    itself, without cameras)."""
    if store_loop_enabled():
        return BusShelfSink()
    from .pipeline import PipelineSink  # lazy: the store loop's core loads only where ingestion runs detection
    return PipelineSink(session=session)


def publish_observations(store_code: str, source: str, obs: TrackObservations, t_last: float | None = None,
                         chunk: int = 20_000) -> None:
    """Publish observations of ``source`` (in chunks of at most ``chunk`` rows)."""
    n = len(obs)
    if n == 0:
        publish(store_code, "obs", obs_record(source=source, obs=obs, t_last=t_last))
        return
    for i in range(0, n, chunk):
        part = obs[i:i + chunk]
        last = t_last if i + chunk >= n else None
        publish(store_code, "obs", obs_record(source=source, obs=part, t_last=last))


def publish_frames(store_code: str, camera: str, frames: list, t_last: float) -> None:
    """Publish a camera's tracked frames (``vision.tracking.FrameTracks``, up to ``t_last`` s UTC) on the store's
    ``cam`` stream for the store worker's join (:func:`cam_record`)."""
    publish(store_code, "cam", cam_record(camera=camera, frames=frames, t_last=t_last))


def store_loop_enabled() -> bool:
    """``settings.WALKOUT["STORE_LOOP"]`` is on: gate scans, shelf blocks and observations go to the store loop's
    streams (production default; the embedded profile turns it on for ``emulate_store`` and the demo)."""
    return str(settings.WALKOUT.get("STORE_LOOP", "off")).lower() in ("on", "1", "true", "yes")


def on_visit_admitted(sender, *, visit, gate, at, **kwargs) -> None:
    """``store.gates.signals.visit_admitted`` → an ``entry`` record on the store's gate stream."""
    if not store_loop_enabled():
        return
    try:
        publish(gate.store.code, "gate", gate_record(event="entry", visit=visit.pk, t=at.timestamp(),
                                                     party_lead=visit.party_lead_id, gate=gate.name))
    except Exception:  # the visit stands; without its binding its events go to review (alerted by the loop)
        log.exception("store %s: could not publish the entry of visit %s", gate.store.code, visit.pk)


def on_visit_exit_scanned(sender, *, visit, gate, at, **kwargs) -> None:
    """``store.gates.signals.visit_exit_scanned`` → an ``exit`` record on the store's gate stream."""
    if not store_loop_enabled():
        return
    try:
        publish(gate.store.code, "gate", gate_record(event="exit", visit=visit.pk, t=at.timestamp(), gate=gate.name))
    except Exception:  # the exit scan already exited the visit; its checkout task bills it
        log.exception("store %s: could not publish the exit of visit %s", gate.store.code, visit.pk)
