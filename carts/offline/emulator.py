"""The device emulator (``manage.py emulate_store``): plays a recording's devices against a running Walkout exactly
as real devices would, then scores what the store billed.

Devices: shelf controllers send their blocks (HTTP controller API ``/sensors/api/weights/`` in the embedded
profile, MQTT in production), the store's own tracker sends the recorded keypoints through the external-tracker
adapter (``/vision/api/observations/``; track ids tagged per run, as a tracker never reuses one: a recording
played twice must not hand the store a track it bound before) — or, where the recording has camera video, the
store's cameras play the video files instead (embedded profile only: :func:`video_cameras`; one camera worker per
file, every frame at its own time, in step with the other devices; the cameras' tracks joined into shoppers by
``vision.shoppers.ShopperStream`` on the store's observation stream as :data:`CAMERAS_SOURCE`) — and the gate
scans real shopper accounts' passes at the entry (``/gates/api/scan/``, party members as guests of one pass) and,
where the recording has a scanned exit, at the exit (``/gates/api/exit/``). Nobody tells the store which track is whom: the store loop binds each scan to the track that
appeared at the gate and sees each shopper leave. Times are the recording's, shifted so that it starts now and
played at ``speed`` × real time. A store's devices never stop: a shelf controller whose recorded samples end
before the recording does goes on sampling its idle plates (the recorder stopped, not the controller), and after
the recording every device goes on (idle shelves, an empty tracker heartbeat) until every visit is billed.

The devices are the emulator's own, registered in the store under :data:`EMULATOR` and marked ``emulated`` (re-keyed
each run, as only their key hashes are kept); a device a manager registered is never used or changed.

In the embedded profile the requests go to this process's own Django (the test client) and the store loop runs as
a thread here (``carts.runtime_publish.local_worker``); in production they go to ``--url`` (daphne) and the broker, and
``run_store`` must be running.
"""
from __future__ import annotations

import json
import logging
import math
import os
import secrets
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timezone as dt_timezone

import numpy as np
from django.conf import settings

from sensors.ingest import encode_payload
from store.gates.models import Visit
from store.accounts.demo import DEMO_SHOPPER, demo_shopper_ensure
from store.recording import Recording

from carts.offline.steps import recording_steps
from .replay import PARTY_WITHIN_S, session_prefix
from .simulation_truth import parties_from_gates
from .emulator_devices import (
    EMULATOR, SETTLED, _Controller, _controllers, _count, controller_blocks, door_gates, emulated_store, entry_doors,
    idle_samples,
    recover_stale_visits, register,
)
from .emulator_transport import EmulatorError, LocalTransport, RemoteTransport
from carts.offline.video import recorded_cameras
from vision.config import vision_settings
from vision.shoppers import ShopperStream
from vision.worker import CameraWorker, StoreCameras, VideoCamera
from vision.zones import zones_from_store
from carts import runtime, runtime_publish
from carts.records import gate_record
from sensors.live import http_ingestor_reset
from store.gates.services import pass_issue
from sensors.models import ShelfEvent

log = logging.getLogger(__name__)


@dataclass
class EmulationResult:
    """What one emulation did: ``session`` (the visits and shelf events it made are labelled with it, visits by the
    recording's track of the account scanned), ``visits`` (recording track → visit id), the wall seconds it took
    and what the devices sent (``sent["idle"]``: shelf blocks of plates idling after their recorded samples;
    ``sent["frames"]``, ``sent["camera_obs"]``: video frames the cameras read, observation records they published)."""

    session: str
    store_code: str
    visits: dict[str, int]
    wall_s: float
    sent: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    #: Recording seconds the devices went on after the recording's end before every visit had settled.
    settled_after_s: float = 0.0
    #: What was done with the visits an earlier, stopped emulation left open (:func:`recover_stale_visits`).
    recovered: list[str] = field(default_factory=list)


CAMERAS_SOURCE = f"cameras:{EMULATOR}"


def video_cameras(store, recording: Recording, *, run_tag: str, say=lambda msg: None):
    """The store's cameras as ``recording``'s videos (``vision.worker.StoreCameras``): one camera worker per usable
    camera (``carts.offline.video.recorded_cameras``: its calibration, its file's frames inside the recording's span, each
    frame processed), joined into shoppers by one ``vision.shoppers.ShopperStream`` (ids ``<run_tag>-S<n>``, never an
    earlier run's), published on ``store``'s observation stream as :data:`CAMERAS_SOURCE`. Loads the models
    (seconds). Raises :class:`EmulatorError` when no camera can be played."""
    cfg = vision_settings()
    session = f"{EMULATOR}.{run_tag}"
    trackers, problems = recorded_cameras(recording, session=session, stride=int(cfg["STRIDE"]), within=True)
    for p in problems:
        say(f"camera problem: {p}\n")
    if not trackers:
        raise EmulatorError(f"{recording.name}: none of its {len(recording.cameras)} camera(s) can be played "
                            f"({'; '.join(problems)})")
    workers = [CameraWorker(VideoCamera(ct.camera.name, src.source, 0.0, src.width, src.height), ct,
                            publish=lambda obs, t_last: None, frame_every_s=None) for ct, src in trackers]
    stream = ShopperStream([ct.camera.name for ct, _ in trackers], zones_from_store(recording.store),
                           gate_m=float(cfg["GATE_M"]), max_gap_s=float(cfg["MAX_GAP_S"]), prefix=f"{run_tag}-S")

    def publish(obs, t_last: float) -> None:
        runtime_publish.publish_observations(store.code, CAMERAS_SOURCE, obs, t_last=t_last)

    cameras = StoreCameras(workers, {ct.camera.name: src for ct, src in trackers}, stream, publish=publish,
                           threads=min(len(trackers), os.cpu_count() or 1))
    cameras.skipped = problems
    return cameras


def emulate(recording: Recording, *, speed: float = 1.0, url: str | None = None, mqtt_url: str | None = None,
            step_s: float = 0.2, settle_timeout_s: float = 120.0, out=None,
            bind_visits: list[int] | None = None) -> EmulationResult:
    """Play ``recording``'s devices (module docstring) and wait until every visit has settled. Returns an
    :class:`EmulationResult`; its visits and shelf events are labelled with its session for ``evaluate``.

    ``bind_visits``: visits already admitted in the recording's store (people really inside, e.g. a new shopper
    who scanned in at the gate) whom the recording's first shoppers are: at each of the first entries (not guests)
    the gate's entry of the next such visit is sent to the store loop instead of a new pass being scanned, so the
    recorded shopper's track is bound to that visit and its cart fills on that shopper's phone.

    ``url``/``mqtt_url``: a running production deployment (default: this process, embedded profile). Raises
    :class:`EmulatorError` when a device is refused or the visits do not settle within ``settle_timeout_s`` wall
    seconds after the recording ended; ValueError for a ``speed`` that is not finite and > 0."""
    if not (math.isfinite(speed) and speed > 0):
        raise ValueError(f"speed must be a finite number > 0, got {speed}")
    if recording.cameras and url is not None:
        raise EmulatorError(f"{recording.name} has camera video: its cameras are played in the embedded profile only "
                            "(without --url); in production each camera is a run_camera worker on a real stream")
    say = (lambda msg: out.write(msg)) if out is not None else (lambda msg: None)
    loop_setting = settings.WALKOUT.get("STORE_LOOP")
    if url is None:
        settings.WALKOUT["STORE_LOOP"] = "on"  # this process runs the store loop (embedded profile)
        http_ingestor_reset()  # the HTTP endpoint's ingestor now publishes to the loop's streams
        transport = LocalTransport()
    else:
        transport = RemoteTransport(url, mqtt_url or settings.MQTT_URL)
    store = emulated_store(recording)  # created unlisted where new: never offered to shoppers
    devices = register(store)
    gate_key, tracker_key = devices.gate_key, devices.tracker_key
    # a store with several entry doors (a simulation's rooms): each shopper scans at the gate of the door they enter
    doors = {zone: key for zone, (_, key) in door_gates(store, recording).items()}
    door_of = entry_doors(recording) if doors else {}
    recovered = recover_stale_visits(store, remote=url is not None)  # an earlier run killed mid-way
    for note in recovered:
        say(note + "\n")
    recording = controller_blocks(recording)
    controllers = _controllers(store, recording)
    party_of = parties_from_gates(recording.gates, within_s=PARTY_WITHIN_S)
    guests = {lead: sum(1 for m, lead_of in party_of.items() if lead_of == lead and m != lead) for lead in set(party_of.values())}
    run_tag = secrets.token_hex(3)  # a tracker never gives a new shopper the id of an earlier one
    cameras = None
    if recording.cameras:  # the store's cameras are the recording's videos, played in step with the other devices
        cameras = video_cameras(store, recording, run_tag=run_tag, say=say)  # models loaded before the clock starts
    sent = {"shelf": 0, "idle": 0, "obs": 0, "entry": 0, "exit": 0}
    problems: list[str] = []
    accounts: dict[str, str] = {}
    visits: dict[str, int] = {}
    tokens: dict[str, str] = {}  # party lead track → the pass its guests scan again
    started = time.time()
    # a whole number of seconds: every time sent is the recording's plus an integer, exactly (t and t + offset share
    # a float64 binade), so the store's 0.1 s body frames (vision.identity) group the sightings as `evaluate` does;
    # an offset with a fraction moves them and flips decisions at the margin (docs/store-worker-load.md)
    offset = float(math.ceil(started + 1.0 - recording.t_start))
    wall0 = time.monotonic() + (recording.t_start + offset - started)
    local_worker = None
    if url is None:  # this process runs the store loop, driven step by step after each batch the devices send
        local_worker = runtime.StoreWorker(store.code)
        runtime_publish.register_local(store.code, local_worker)
        # resume the store from its checkpoint first: an earlier emulation played faster than real time leaves the
        # store's clock ahead of the wall clock, and devices playing behind it would be late for the loop (a shopper
        # bound, then taken for gone). The devices' clock starts after the store's.
        local_worker.step(block_ms=0)
        # the recording's plates start where they started, not where the last emulation left them: a restock, not
        # a +600 g put-back by nobody
        local_worker.pipeline.loop.shelves_restocked(c for block in recording.shelves for c in block.bin_codes)
        known = [local_worker.pipeline.loop.now, *(t for t, _ in local_worker.sources.values())]
        store_now = max((t for t in known if math.isfinite(t)), default=-math.inf)
        if store_now + 1.0 > started + 1.0:
            offset = float(math.ceil(store_now + 1.0 - recording.t_start))
    if cameras is not None:
        cameras.t_shift = offset  # its frames on the devices' clock
    say(f"emulating {recording.name} at {speed:g}× on store {store.code}: {len(controllers)} shelf controller(s), "
        + (f"{len(cameras.workers)} camera(s) played at their frame rate" if cameras is not None
           else f"{len(recording.tracks.track_ids())} track(s)")
        + f", {_count(sum(1 for g in recording.gates if g.kind == 'entry'), 'entry', 'entries')} at the gate\n")

    def account_for(track: str, given: str) -> str:
        if track not in accounts:
            used = set(accounts.values())
            accounts[track] = given or (DEMO_SHOPPER if DEMO_SHOPPER not in used else f"shopper+{track}@walkout.test")
        return accounts[track]

    def pace(t_rec: float) -> None:
        ahead = wall0 + (t_rec - recording.t_start) / speed - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)

    def scan_body(token: str, t_rec: float) -> bytes:
        return json.dumps({"token": token, "t": round(t_rec + offset, 6)}).encode()

    def scan(path: str, token: str, t_rec: float, key: str | None = None) -> tuple[int, dict]:
        return transport.post(path, scan_body(token, t_rec), f"Gate {key or gate_key}")

    # exit scans through post_soon (production: from the gate's own thread; embedded: here, done at once), answers
    # read as they come
    exits: list[tuple[str, str, Future]] = []  # (track, account, answer)

    def read_exits(*, wait: bool = False, account: str | None = None) -> None:
        """The answers of the exit scans sent so far: those that came (``wait``: all, or with ``account`` until
        none of that account's is left — its next entry scan must find it out). Raises what a send raised."""
        while exits and (wait or exits[0][2].done() or any(a == account for _, a, _ in exits)):
            track, _, answer = exits.pop(0)
            status, body = answer.result()
            if status == 200:
                sent["exit"] += 1
            elif body.get("reason") != "no_visit":  # a party's exit scan exits the whole party at once
                problems.append(f"track {track}: exit scan refused ({body.get('reason')})")

    def send_shelf(c: _Controller, t: np.ndarray, grams: np.ndarray, *, idle: bool = False) -> None:
        c.seq += 1
        payload = encode_payload(controller=c.name, seq=c.seq, t0=float(t[0]) + offset, rate_hz=c.rate_hz,
                                 grams=grams, key=c.key if transport.key_in_payload else None)
        transport.shelf(store=store.code, controller=c.name, key=c.key, payload=payload)
        if not idle:
            keep = max(1, int(round(c.rate_hz)))
            c.tail = grams[-keep:] if c.tail is None else np.concatenate([c.tail, grams])[-keep:]
        c.t_next = float(t[-1]) + 1.0 / c.rate_hz
        sent["shelf"] += 1
        sent["idle"] += idle

    def idle_until(c: _Controller, t_until: float) -> None:
        """A controller whose recorded samples are over keeps sampling its idle plates up to ``t_until`` (recording
        time, exclusive), continuing its own timeline and sequence: its clock, and so the store's shelf horizon,
        keeps up with the other devices (a controller that fell silent would hold billing back, and one resumed
        later at the current time with a sequence gap is re-timed by the ingestor onto its sample count, i.e. back
        where it stopped: ``sensors.ingest`` ``clock_jump``)."""
        if not c.recorded_done:
            return
        max_n = max(1, int(round(step_s * c.rate_hz)))  # blocks as long as a step, as the recorded ones
        while True:
            n = min(max_n, int(math.ceil((t_until - c.t_next) * c.rate_hz - 1e-6)))
            if n <= 0:
                return
            send_shelf(c, c.t_next + np.arange(n) / c.rate_hz, idle_samples(c.tail, c.idle, n), idle=True)
            c.idle += n

    def send_obs(obs, t_last: float) -> None:
        rows = [[f"{run_tag}-{obs.track_id[i]}", round(float(obs.t[i]) + offset, 6), str(obs.keypoint[i]),
                 *(round(float(v), 4) for v in obs.xyz[i]), round(float(obs.score[i]), 4)] for i in range(len(obs))]
        body = json.dumps({"v": 1, "t_last": round(t_last + offset, 6), "rows": rows}).encode()
        if hasattr(transport, "post_later"):  # production: the devices do not wait for daphne's answer
            transport.post_later("/vision/api/observations/", body, f"Tracker {tracker_key}")
        else:  # embedded: in this process, before the store loop steps
            status, answer = transport.post("/vision/api/observations/", body, f"Tracker {tracker_key}")
            if status >= 400:
                raise EmulatorError(f"the tracker adapter answered {status}: {answer}")
        sent["obs"] += 1

    by_codes = {c.bin_codes: c for c in controllers}
    inside = list(Visit.objects.filter(pk__in=bind_visits or [], store=store).select_related("shopper")
                  .order_by("entered_at", "pk"))

    def next_inside() -> Visit | None:
        """The next visit of ``bind_visits`` still admitted and unbound (one that left meanwhile, was bound to a
        track, or was an earlier emulation's and exited by :func:`recover_stale_visits`, is skipped)."""
        while inside:
            person = inside.pop(0)
            person.refresh_from_db()
            if person.state == Visit.State.ADMITTED and not person.track_id:
                return person
            say(f"visit {person.pk} is {person.state}{' (bound to a track)' if person.track_id else ''}: not "
                "bound to this emulation\n")
        return None

    t_rec = t_played = recording.t_end  # recording time the devices have reached
    try:
        for step in recording_steps(recording, step_s=step_s):
            pace(step.t)
            for g in step.gates:
                person = (next_inside() if g.kind == "entry" and party_of.get(g.track, g.track) == g.track
                          else None)
                if person is not None:  # someone really inside is this recorded shopper: bind, don't scan
                    runtime_publish.publish(store.code, "gate", gate_record(
                        event="entry", visit=person.pk, t=round(g.t + offset, 6), gate=EMULATOR))
                    accounts[g.track] = person.shopper.get_username()
                    visits[g.track] = person.pk
                    sent["entry"] += 1
                    continue
                if g.kind == "entry":
                    lead = party_of.get(g.track, g.track)
                    if lead != g.track and lead in tokens:
                        token = tokens[lead]  # a guest scans the lead's pass again
                    else:
                        read_exits(account=account_for(g.track, g.account))
                        user = demo_shopper_ensure(account_for(g.track, g.account))
                        token = pass_issue(shopper=user, store=store, guests=guests.get(g.track, 0))[1]
                        tokens[g.track] = token
                    status, body = scan("/gates/api/scan/", token, g.t, doors.get(door_of.get(g.track, "")))
                    if status != 200:
                        problems.append(f"track {g.track}: refused at the gate ({body.get('reason')}: "
                                        f"{body.get('message')})")
                        continue
                    visits[g.track] = int(body["visit"])
                    sent["entry"] += 1
                elif g.source == "scanned" and g.track in visits:
                    user = demo_shopper_ensure(account_for(g.track, g.account))
                    token = pass_issue(shopper=user, store=store)[1]
                    # the other devices do not wait for the store's answer
                    exits.append((g.track, account_for(g.track, g.account), transport.post_soon(
                        "/gates/api/exit/", scan_body(token, g.t), f"Gate {gate_key}")))
            read_exits()
            if cameras is not None:
                cameras.play(step.t_next + offset)
            else:
                send_obs(step.tracks, step.t_next)
            for codes, t, grams, _ in step.shelves:
                send_shelf(by_codes[codes], t, grams)
            for c in controllers:
                idle_until(c, step.t_next)
            if local_worker is not None:
                while local_worker.step(block_ms=0):
                    pass
            t_rec = t_played = step.t_next
        # the recording is over; the devices go on (idle shelves, a tracker seeing nobody) until the store settles
        read_exits(wait=True)
        deadline = time.monotonic() + settle_timeout_s
        ids = list(visits.values())
        while True:
            left = Visit.objects.filter(pk__in=ids).exclude(state__in=SETTLED).count()
            if not left:
                break
            if time.monotonic() > deadline:
                raise EmulatorError(f"{left} visit(s) did not settle within {settle_timeout_s:.0f} s after the "
                                    f"recording ended (is run_store running?)")
            pace(t_rec)
            t_rec += step_s
            if cameras is not None:
                cameras.play(t_rec + offset)
            else:
                send_obs(recording.tracks[:0], t_rec)
            for c in controllers:
                idle_until(c, t_rec)
            if local_worker is not None:
                while local_worker.step(block_ms=0):
                    pass
    finally:
        transport.close()
        if cameras is not None:
            cameras.close()
            sent["frames"] = sum(w.stats.frames for w in cameras.workers.values())
            sent["camera_obs"] = cameras.records
            problems += [f"camera: {p}" for p in cameras.skipped + cameras.problems]
        if local_worker is not None:
            local_worker.checkpoint()
            runtime_publish.unregister_local(store.code)

            settings.WALKOUT["STORE_LOOP"] = loop_setting
            http_ingestor_reset()
    if getattr(transport, "failed", None):  # a tracker post sent in the background was refused
        raise EmulatorError(f"the tracker adapter: {transport.failed}")
    session = f"{session_prefix(recording)}@emulate-{datetime.now(dt_timezone.utc):%Y%m%dT%H%M%S.%fZ}"
    _label(store, session, visits, recording.t_start + offset, t_rec + offset, made_from=started)
    return EmulationResult(session=session, store_code=store.code, visits=visits, wall_s=time.time() - started,
                           sent=sent, problems=problems, settled_after_s=t_rec - t_played, recovered=recovered)


def _label(store, session: str, visits: dict[str, int], t0: float, t1: float, *, made_from: float) -> None:
    """Label what this emulation made with ``session`` (its visits by the recording track of the account scanned,
    the shelf events between ``t0`` and ``t1``, s UTC on the devices' clock, stored since ``made_from``, s UTC on
    the wall clock, when it started) so that ``evaluate --session`` scores it like a replay. An earlier run that was
    stopped, played faster than real time, left events stamped ahead of the wall clock, inside this run's window:
    they were stored before this run began, and are not its."""
    live = settings.WALKOUT.get("SENSORS_SESSION", "live")
    for track, visit_id in visits.items():
        Visit.objects.filter(pk=visit_id).update(session=session, track_id=track)
    ShelfEvent.objects.filter(store=store, session=live, t_start__gte=datetime.fromtimestamp(t0 - 5, dt_timezone.utc),
                              t_start__lte=datetime.fromtimestamp(t1 + 60, dt_timezone.utc),
                              created_at__gte=datetime.fromtimestamp(made_from, dt_timezone.utc)
                              ).update(session=session)
