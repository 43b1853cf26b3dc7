"""Start a live session of a recording from the manager's dashboard, so shoppers' phones see carts change live.

Embedded profile: the recording's devices are emulated against this server (``carts.offline.emulator``: shelf blocks to
the controller API, keypoints to the tracker adapter, real passes at the gate) and the store loop runs here, in a
thread started from the server's event loop (``sync_to_async``), so that its ``async_to_sync(group_send)`` calls run
on that loop, where the in-memory channel layer's consumers are. Production profile: the replay runs on a Celery
worker (``replay_recording_task``); its cart pushes reach the browsers through the Redis channel layer (to play a
store's devices against a production deployment, run ``manage.py emulate_store REC --url …``).
"""
from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

from asgiref.sync import sync_to_async
from django.conf import settings
from django.utils import timezone

from store.accounts.demo import DEMO_SHOPPER
from store.gates.models import Visit
from store.gates.services import visit_open_max_h
from store.recording import read_recording

from .tasks import replay_recording_task

log = logging.getLogger(__name__)
_running: set[asyncio.Task] = set()


class LiveReplayBusy(RuntimeError):
    """One live replay at a time per server: two would admit the same demo shoppers twice at once."""


def visits_waiting(*, store_code: str) -> list:
    """Visits of store ``store_code`` admitted at the gate and not yet bound to a shopper track (people inside
    whom no camera has placed yet), oldest first, guests left out, within ``VISIT_OPEN_MAX_H``: in a live replay
    they are the recording's first shoppers (``carts.offline.emulator.emulate(bind_visits=…)``). Visits admitted at the
    emulator's own gates (``emulated``: recorded shoppers of an earlier emulation that was stopped, which the next
    one exits and bills, ``carts.offline.emulator_devices.recover_stale_visits``) are nobody inside and are left out."""
    since = timezone.now() - timedelta(hours=visit_open_max_h())
    return list(Visit.objects.filter(store__code=store_code, state=Visit.State.ADMITTED, track_id="",
                                     party_lead__isnull=True, entered_at__gte=since)
                .exclude(entry_pass__used_gate__emulated=True)
                .select_related("shopper").order_by("entered_at", "pk"))


def replay_cast(*, store_code: str, entries: int) -> list[tuple[str, int | None]]:
    """Who plays a recording's ``entries`` shoppers (not guests) if it starts now: ``[(account, visit id or
    None)]`` — the people inside first (:func:`visits_waiting`), then the demo account, then
    ``shopper+<track>@walkout.test`` accounts (shown as such)."""
    cast: list[tuple[str, int | None]] = [(v.shopper.get_username(), v.pk)
                                          for v in visits_waiting(store_code=store_code)[:entries]]
    for i in range(entries - len(cast)):
        cast.append((DEMO_SHOPPER if i == 0 else "shopper+<track>@walkout.test", None))
    return cast


def recording_cast(recording) -> list[tuple[str, int | None]]:
    """:func:`replay_cast` for ``recording`` (a ``store.recording.Recording``): its store, and as many shoppers as
    it has entries that are not a party's guests."""
    # lazy: offline tooling, loaded when a manager looks at a recording (tests/test_runtime_no_offline.py)
    from .offline.replay import PARTY_WITHIN_S
    from .offline.simulation_truth import parties_from_gates

    party_of = parties_from_gates(recording.gates, within_s=PARTY_WITHIN_S)
    entries = sum(1 for g in recording.gates if g.kind == "entry" and party_of.get(g.track, g.track) == g.track)
    return replay_cast(store_code=recording.store["store"]["code"], entries=entries)


def recordings_available() -> list[Path]:
    """Recording folders under ``settings.RECORDINGS_DIR`` (those with a ``recording.json``), by name."""
    root = Path(settings.RECORDINGS_DIR)
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if (p / "recording.json").is_file())


async def live_replay_start(*, path: Path, session: str, speed: float = 1.0,
                            bind_visits: list[int] | None = None) -> str:
    """Start replaying ``path`` at ``speed`` × real time in ``session``; returns how it runs ("worker"/"server").
    ``bind_visits``: visits already inside that are the recording's first shoppers (embedded profile:
    ``carts.offline.emulator.emulate``; production: the worker's ``carts.offline.replay.replay_recording``).

    Must be called from the server's event loop (an async view). Raises ValueError for a path outside
    ``settings.RECORDINGS_DIR``, :class:`LiveReplayBusy` while another live replay runs in this server.
    """
    root = Path(settings.RECORDINGS_DIR).resolve()
    path = Path(path).resolve()
    if root not in path.parents:
        raise ValueError(f"{path} is not under {root}")
    if _running:
        raise LiveReplayBusy("a live replay is already running in this server; wait for it to finish")
    if not settings.CELERY_TASK_ALWAYS_EAGER:
        await sync_to_async(replay_recording_task.delay)(str(path), session, speed, list(bind_visits or []))
        return "worker"

    def emulate_here() -> None:
        from .offline.emulator import emulate  # lazy: offline tooling, loaded when a manager starts a replay

        result = emulate(read_recording(path), speed=speed, bind_visits=bind_visits)
        log.info("live emulation of %s done: session %s, visits %s", path, result.session, result.visits)

    async def run() -> None:
        try:  # the devices play against this server, and the store loop runs here (embedded profile)
            await sync_to_async(emulate_here, thread_sensitive=False)()
        except Exception:
            log.exception("live emulation of %s failed", path)

    task = asyncio.get_running_loop().create_task(run())
    _running.add(task)
    task.add_done_callback(_running.discard)
    return "server"
