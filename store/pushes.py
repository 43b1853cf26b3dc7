"""Live pushes to the channel layer's groups (the shoppers' carts, the dashboards): batches of group messages sent
at once, in order within a group, each push bounded in time; and, for the store worker, sent from a thread of its
own so that its step does not wait on the channel layer's round trips (best effort throughout: the database is
the truth and clients resync)."""
from __future__ import annotations

import asyncio
import logging
import queue
import threading

from asgiref.sync import async_to_sync

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
    """Pushes sent by a daemon thread with an event loop of its own: the cart pushes (``carts.services.ledger``) and
    the dashboards' notices hand each batch of group messages over (:func:`send_groups`) and return, instead of
    waiting for the channel layer's round trips (at a 200-shopper exodus the store worker spent 7 % of its wall
    time waiting on them: docs/store-worker-load.md, fifteenth pass).
    Batches are sent one after the other in the order handed over, each as :func:`group_send_all` sends it
    (groups at once, in order within a group), so a group's messages keep their order. At most ``max_batches``
    wait; one more is dropped, logged and counted in ``dropped`` (best effort, as every push is: the ledger is the
    truth and a phone that sees a gap in ``seq`` asks for a fresh snapshot). ``sent``: batches sent so far."""

    def __init__(self, max_batches: int = 1000) -> None:
        self._queue: queue.Queue = queue.Queue(maxsize=max_batches)
        self.sent = 0
        self.dropped = 0
        self._thread = threading.Thread(target=self._run, name="cart-pushes", daemon=True)
        self._thread.start()

    def submit(self, layer, messages: list[tuple[int, str, dict]]) -> None:
        """Queue one batch (``(visit id, group, message)`` each) for ``layer``; never blocks."""
        try:
            self._queue.put_nowait((layer, messages))
        except queue.Full:
            self.dropped += 1
            log.error("cart pushes: %d batches wait for the channel layer; the pushes of visits %s are dropped "
                      "(their phones resync at the next one)", self._queue.maxsize,
                      sorted({visit_id for visit_id, _, _ in messages}))

    def close(self, timeout_s: float = PUSH_TIMEOUT_S) -> bool:
        """Send what was handed over (waiting up to ``timeout_s`` wall seconds), then stop the thread. Returns
        whether the thread stopped in time (a daemon: one that did not dies with the process)."""
        try:
            self._queue.put((None, None), timeout=timeout_s)
        except queue.Full:
            return False
        self._thread.join(timeout_s)
        return not self._thread.is_alive()

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            while True:
                layer, messages = self._queue.get()
                if layer is None:
                    return
                try:
                    loop.run_until_complete(group_send_all(layer, messages))
                except Exception:  # group_send_all logs each failed push; anything else must not stop the thread
                    log.exception("cart pushes: a batch failed")
                self.sent += 1
        finally:
            loop.close()


_background: BackgroundPushes | None = None


def pushes_in_background(on: bool) -> BackgroundPushes | None:
    """Send this process's pushes from a thread of its own (``on``: the store worker while it runs, whose
    step must not wait on the channel layer) or inline again (``off``: the batches handed over are sent first, up
    to :data:`PUSH_TIMEOUT_S`). Returns the sender while on, else None."""
    global _background
    if on and _background is None:
        _background = BackgroundPushes()
    elif not on and _background is not None:
        sender, _background = _background, None
        if not sender.close():
            log.warning("cart pushes: the sender thread did not finish within %g s", PUSH_TIMEOUT_S)
    return _background




def send_groups(layer, messages: list[tuple[int, str, dict]]) -> None:
    """Send ``messages`` (``(visit id or 0, group, message)`` each) on ``layer``: handed to the background sender
    while one is on (:func:`pushes_in_background`), else at once (:func:`group_send_all`, waited for). Never
    raises: a failure is logged (best effort)."""
    sender = _background
    if sender is not None:
        sender.submit(layer, messages)
        return
    try:
        async_to_sync(group_send_all)(layer, messages)
    except Exception:  # no loop to run it on (called from async code): best effort, as each push is
        log.exception("could not push to %s", sorted({group for _, group, _ in messages}))
