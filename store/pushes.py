"""Live pushes to the channel layer's groups (the shoppers' carts, the dashboards): batches of group messages sent
at once, in order within a group, each push bounded in time; and, for the store worker, sent from a thread of its
own so that its step does not wait for the snapshots' reads and the channel layer's round trips (best effort throughout: the database is
the truth and clients resync)."""
from __future__ import annotations

import asyncio
import logging
import queue
import threading
from typing import Callable

from asgiref.sync import async_to_sync
from django.db import close_old_connections, connections

log = logging.getLogger(__name__)

#: Groups a batch of pushes sends to at once (:func:`group_send_all`): each send is a few round trips to the channel
#: layer's Redis, and a step of the store loop at an exodus pushes a hundred carts; bounded so that a batch never opens
#: more connections than that.
PUSH_CONCURRENCY = 16
#: Seconds one push may take before it is given up (logged; the phone resyncs from the ledger): a channel layer that
#: hangs must not hold the store loop, whose step waits for its batch's pushes. Its own timeouts are longer.
PUSH_TIMEOUT_S = 5.0


async def group_send_all(layer, messages: list[tuple[int, str, dict]]) -> None:
    """Send each (visit id, group, message), in order within a group and up to :data:`PUSH_CONCURRENCY` groups at
    once (one after the other, the store worker waited 7 % of its busiest steps on these round trips); a failed push,
    or one over :data:`PUSH_TIMEOUT_S`, is logged (best effort: the ledger is the truth and clients resync) and the
    rest still go."""
    by_group: dict[str, list[tuple[int, dict]]] = {}
    for visit_id, group, message in messages:
        by_group.setdefault(group, []).append((visit_id, message))
    gate = asyncio.Semaphore(PUSH_CONCURRENCY)

    async def send(group: str, items: list[tuple[int, dict]]) -> None:
        async with gate:
            for visit_id, message in items:
                try:
                    await asyncio.wait_for(layer.group_send(group, message), PUSH_TIMEOUT_S)
                except asyncio.TimeoutError:
                    log.error("the push of visit %s's cart to %s took over %g s; given up", visit_id, group,
                              PUSH_TIMEOUT_S)
                except Exception:  # the live push is best-effort; the ledger is the truth and clients resync
                    log.exception("could not push the cart of visit %s", visit_id)

    await asyncio.gather(*(send(group, items) for group, items in by_group.items()))


class BackgroundPushes:
    """Pushes made by a daemon thread with an event loop (and a database connection) of its own: the cart pushes
    (``carts.services.ledger``: their snapshots read and sent) and the dashboards' notices are handed over as jobs
    (:func:`in_background`, :func:`send_groups`) and the caller returns, instead of reading the snapshots and waiting
    for the channel layer's round trips itself (at a 200-shopper exodus the store worker spent 7 % of its wall time
    waiting on those round trips and as much again reading snapshots: docs/store-worker-load.md, fifteenth pass).
    Jobs run one after the other in the order handed over, and a job's messages go as :func:`group_send_all` sends
    them (groups at once, in order within a group), so a group's messages keep their order. At most ``max_jobs``
    wait; one more is dropped, logged and counted in ``dropped`` (best effort, as every push is: the ledger is the
    truth and a phone that sees a gap in ``seq`` asks for a fresh snapshot). ``done``: jobs run so far."""

    def __init__(self, max_jobs: int = 1000) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max_jobs)
        self.done = 0
        self.dropped = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="pushes", daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None], what: str = "a push") -> None:
        """Queue ``job`` (run in the sender's thread, exceptions logged); never blocks."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            log.error("pushes: %d jobs wait for the channel layer; %s is dropped (phones resync at the next one)",
                      self._queue.maxsize, what)

    def send(self, layer, messages: list[tuple[int, str, dict]]) -> None:
        """In the sender's thread (a job's): send ``messages`` on its event loop now."""
        self._loop.run_until_complete(group_send_all(layer, messages))

    def is_current(self) -> bool:
        """Whether the calling thread is the sender's (a job runs there)."""
        return threading.current_thread() is self._thread

    def close(self, timeout_s: float = PUSH_TIMEOUT_S) -> bool:
        """Run the jobs handed over (waiting up to ``timeout_s`` wall seconds), then stop the thread. Returns
        whether the thread stopped in time (a daemon: one that did not dies with the process)."""
        try:
            self._queue.put(None, timeout=timeout_s)
        except queue.Full:
            return False
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        _thread.sender = self  # a job run while the sender closes still sends through it
        try:
            while True:
                job = self._queue.get()
                if job is None:
                    return
                try:
                    job()
                except Exception:  # group_send_all logs each failed push; nothing may stop the thread
                    log.exception("pushes: a job failed")
                finally:
                    close_old_connections()  # a broken or expired connection is not reused
                self.done += 1
        finally:
            self._loop.close()
            connections.close_all()  # this thread's


_background: BackgroundPushes | None = None
_thread = threading.local()  # .sender: the BackgroundPushes whose thread this is


def _sender() -> BackgroundPushes | None:
    """The sender of the calling thread when it is a sender's (its jobs), else the process's (None while off)."""
    return getattr(_thread, "sender", None) or _background


def pushes_in_background(on: bool) -> BackgroundPushes | None:
    """Make this process's pushes in a thread of their own (``on``: the store worker while it runs, whose step must
    not wait for them) or in the caller again (``off``: the jobs handed over are run first, up to
    :data:`PUSH_TIMEOUT_S`). Returns the sender while on, else None."""
    global _background
    if on and _background is None:
        _background = BackgroundPushes()
    elif not on and _background is not None:
        sender, _background = _background, None
        if not sender.close():
            log.warning("pushes: the sender thread did not finish within %g s", PUSH_TIMEOUT_S)
    return _background


def in_background(job: Callable[[], None], what: str = "a push") -> None:
    """Run ``job`` (a push: read what to send, then :func:`send_groups`) in the background sender's thread while
    one is on, else here and now (its exceptions then propagate)."""
    sender = _sender()
    if sender is None or sender.is_current():
        job()
    else:
        sender.submit(job, what)


def send_groups(layer, messages: list[tuple[int, str, dict]]) -> None:
    """Send ``messages`` (``(visit id or 0, group, message)`` each) on ``layer``: in the background sender's thread
    while one is on (:func:`pushes_in_background`; from a job of its own at once), else here, waited for
    (:func:`group_send_all`). Never raises: a failure is logged (best effort)."""
    sender = _sender()
    if sender is not None:
        if sender.is_current():
            sender.send(layer, messages)
        else:
            sender.submit(lambda: sender.send(layer, messages),
                          f"the push to {sorted({group for _, group, _ in messages})}")
        return
    try:
        async_to_sync(group_send_all)(layer, messages)
    except Exception:  # no loop to run it on (called from async code): best effort, as each push is
        log.exception("could not push to %s", sorted({group for _, group, _ in messages}))
