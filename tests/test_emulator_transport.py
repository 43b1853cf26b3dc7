"""The production emulator's tracker posts (``carts.offline.emulator_transport.RemoteTransport.post_later``): sent in order by
one background thread, so that the emulated devices do not wait for daphne's answer (a real tracker goes on seeing
people while the store answers); a refusal is not lost: it stops the next post and is kept for the emulation's end.
Its exit scans (``post_soon``) likewise go from the gate's own thread, their answers read back as they come.
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
    t._gate, t._gate_session, t._gate_failed = None, object(), None
    sent: list = []
    threads: list = []
    gate = threading.Event()

    def post(path, body, auth, session=None):
        gate.wait(5)  # a slow site: the caller must not be waiting here
        sent.append(body)
        threads.append((threading.current_thread().name, session))
        return answers(len(sent)), {"reason": "bad"}

    t.post = post
    t.gate = gate
    t.threads = threads
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


def test_gate_scans_go_in_order_from_the_gates_thread_and_their_answers_come_back():
    """The exit scans (``post_soon``): at an exodus, 15 a second each waiting for daphne held the emulated shelves and
    tracker back by over a second; now they go from the gate's own thread with its own HTTP session, in order, and
    each answer comes back to the emulation through its future."""
    t, sent = transport(lambda k: 409 if k == 2 else 200)
    started = time.monotonic()
    answers = [t.post_soon("/gates/api/exit/", str(k).encode(), "Gate g") for k in range(4)]
    assert time.monotonic() - started < 1.0 and not any(a.done() for a in answers)
    t.gate.set()
    assert [a.result(5)[0] for a in answers] == [200, 409, 200, 200]
    assert sent == [b"0", b"1", b"2", b"3"]
    assert {name for name, _ in t.threads} == {"emulator-gate_0"} and {s for _, s in t.threads} == {t._gate_session}
    t.close()
    assert t._gate is None


def test_a_gate_scan_that_cannot_reach_the_site_fails_the_scans_queued_behind_it_at_once():
    """A site that does not answer (each post gives up after its 30 s timeout) must not make :meth:`close` send every
    exit scan queued meanwhile, one timeout after the other (at an exodus, 15 a second: hours): the first failure
    fails the rest without sending them, as a synchronous scan stopped the emulation at the first."""
    t, sent = transport(lambda k: 200)
    calls = []

    def unreachable(path, body, auth, session=None):
        calls.append(body)
        t.gate.wait(5)
        raise EmulatorError("http://127.0.0.1:8000 did not answer /gates/api/exit/ (ReadTimeout)")

    t.post = unreachable
    answers = [t.post_soon("/gates/api/exit/", str(k).encode(), "Gate g") for k in range(5)]
    t.gate.set()
    for a in answers:
        with pytest.raises(EmulatorError, match="ReadTimeout"):
            a.result(5)
    t.close()
    assert calls == [b"0"]  # one scan waited for the site; the four behind it were not sent
