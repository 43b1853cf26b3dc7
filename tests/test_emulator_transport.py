"""The production emulator's tracker posts (``carts.offline.emulator_transport.RemoteTransport.post_later``): sent in order by
one background thread, so that the emulated devices do not wait for daphne's answer (a real tracker goes on seeing
people while the store answers); a refusal is not lost: it stops the next post and is kept for the emulation's end.
No broker or site: the transport's HTTP post is replaced."""
from __future__ import annotations

import threading
import time

import pytest

from carts.offline.emulator_transport import EmulatorError, RemoteTransport


class _Mqtt:
    def __exit__(self, *exc) -> None:
        pass


def transport(answers) -> tuple[RemoteTransport, list]:
    """A RemoteTransport whose ``post`` records each call and answers from ``answers`` (status per call)."""
    t = object.__new__(RemoteTransport)
    t._sender, t._queue, t.failed, t.mqtt = None, None, None, _Mqtt()
    sent: list = []
    gate = threading.Event()

    def post(path, body, auth):
        gate.wait(5)  # a slow site: the caller must not be waiting here
        sent.append(body)
        return answers(len(sent)), {"reason": "bad"}

    t.post = post
    t.gate = gate
    return t, sent


def test_tracker_posts_go_in_order_without_the_caller_waiting_for_the_answers():
    t, sent = transport(lambda k: 202)
    started = time.monotonic()
    for k in range(20):
        t.post_later("/vision/api/observations/", str(k).encode(), "Tracker x")
    assert time.monotonic() - started < 1.0 and sent == []  # queued while the site has not answered
    t.gate.set()
    t.close()  # sends what is queued
    assert sent == [str(k).encode() for k in range(20)] and t.failed is None


def test_a_refused_tracker_post_stops_the_next_one_and_is_kept():
    t, sent = transport(lambda k: 400 if k == 3 else 202)  # the third post is refused
    t.gate.set()
    for k in range(3):
        t.post_later("/vision/api/observations/", str(k).encode(), "Tracker x")
    t._queue.join()
    assert t.failed is not None and "400" in t.failed
    with pytest.raises(EmulatorError, match="400"):
        t.post_later("/vision/api/observations/", b"3", "Tracker x")
    t.close()
    assert sent == [b"0", b"1", b"2"]  # after the refusal nothing more was sent
