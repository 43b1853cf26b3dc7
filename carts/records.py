"""Records on the live store's streams: what each producer publishes and the store worker decodes, one stream per
store and kind (:data:`KINDS`). ``shelf``: a shelf controller's validated sample blocks; ``obs``: shopper-track
observations in store metres; ``gate``: entry and exit scans; ``tag``: RFID tag events; ``cam``: a camera's tracked
frames (``carts.camera_join``). Records are plain JSON (arrays as base64 little-endian); a decoder raises
:class:`RecordError` for anything it cannot use, and the worker counts and drops such a record. No Django here.
"""
from __future__ import annotations

import base64
import math

import numpy as np

from sensors.rfid import TagEvent
from store.recording import TrackObservations

#: Stream kinds, one stream per store and kind.
KINDS = ("shelf", "obs", "gate", "tag", "cam")
#: Largest record the worker accepts (bytes of JSON): a block of 306 plates × 60 samples is ~100 kB.
MAX_RECORD_BYTES = 4_000_000


class RecordError(ValueError):
    """A record on a stream that cannot be read (the worker counts it and goes on)."""


def array_b64(arr: np.ndarray, dtype: str) -> str:
    """``arr`` as base64 of its values in ``dtype`` (a numpy type string, e.g. ``"<f8"``), C order."""
    return base64.b64encode(np.ascontiguousarray(arr, dtype=dtype).tobytes()).decode("ascii")


def b64_array(text: str, dtype: str, n: int) -> np.ndarray:
    """The ``n`` values of ``dtype`` that :func:`array_b64` wrote (a read-only view). Raises RecordError for another
    count, ``binascii.Error`` (a ValueError) for text that is not base64."""
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    arr = np.frombuffer(raw, dtype=dtype)
    if arr.size != n:
        raise RecordError(f"expected {n} values, got {arr.size}")
    return arr


def shelf_record(*, controller: str, bin_codes: tuple[str, ...], t: np.ndarray, grams: np.ndarray,
                 rate_hz: float) -> dict:
    """A block of one controller's samples: ``t`` (n,) s UTC (clock offset applied), ``grams`` (n, B) for
    ``bin_codes`` (B). Raises ValueError on shapes."""
    t = np.asarray(t, dtype=np.float64)
    grams = np.asarray(grams, dtype=np.float32)
    if grams.shape != (t.shape[0], len(bin_codes)):
        raise ValueError(f"grams must be ({t.shape[0]}, {len(bin_codes)}), got {grams.shape}")
    return {"controller": controller, "bins": list(bin_codes), "rate_hz": float(rate_hz), "n": int(t.shape[0]),
            "t": array_b64(t, "<f8"), "grams": array_b64(grams, "<f4"), "t_last": float(t[-1]) if len(t) else None}


def obs_record(*, source: str, obs: TrackObservations, t_last: float | None = None) -> dict:
    """Shopper-track observations of one source (a camera worker, a tracker adapter) up to ``t_last`` (s UTC;
    default the latest observation's time): a frame with nobody in it still moves the source's clock."""
    n = len(obs)
    if t_last is None:
        t_last = float(obs.t.max()) if n else None
    return {"source": source, "n": n, "t_last": t_last, "track": [str(x) for x in obs.track_id],
            "keypoint": [str(x) for x in obs.keypoint], "t": array_b64(obs.t, "<f8"), "xyz": array_b64(obs.xyz, "<f8"),
            "score": array_b64(obs.score, "<f8")}


def gate_record(*, event: str, visit: int, t: float, party_lead: int | None = None, gate: str = "") -> dict:
    """A gate's entry (``event`` "entry": ``visit`` admitted at ``t`` s UTC, ``party_lead`` the visit whose party it
    joined) or exit scan ("exit")."""
    if event not in ("entry", "exit"):
        raise ValueError(f"gate event must be entry or exit, got {event!r}")
    return {"event": event, "visit": int(visit), "t": float(t), "party_lead": party_lead, "gate": gate}


def tag_record(*, reader: str, events: list, t_last: float) -> dict:
    """RFID tag events of one reader (``sensors.rfid.TagEvent``, s UTC on the store clock) up to ``t_last``."""
    return {"reader": reader, "t_last": float(t_last), "events": [e.as_dict() for e in events]}


def decode_tag(rec: dict) -> tuple[str, list, float]:
    """(reader, [sensors.rfid.TagEvent], t_last) of a :func:`tag_record`. Raises RecordError."""
    try:
        events = [TagEvent.from_dict(d) for d in rec["events"]]
        t_last = float(rec["t_last"])
        if not math.isfinite(t_last):
            raise RecordError("non-finite t_last")
        return str(rec["reader"]), events, t_last
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"bad tag record: {exc}") from None


def decode_shelf(rec: dict) -> tuple[str, tuple[str, ...], np.ndarray, np.ndarray, float]:
    """(controller, bin codes, t (n,), grams (n, B), rate Hz) of a :func:`shelf_record`. Raises RecordError."""
    try:
        bins = tuple(str(b) for b in rec["bins"])
        n = int(rec["n"])
        t = b64_array(rec["t"], "<f8", n)
        grams = b64_array(rec["grams"], "<f4", n * len(bins)).reshape(n, len(bins)).astype(np.float64)
        rate = float(rec["rate_hz"])
        if not (bins and np.isfinite(t).all() and rate > 0):
            raise RecordError("empty bins, non-finite times or a bad rate")
        return str(rec["controller"]), bins, t, grams, rate
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"bad shelf record: {exc}") from None


def decode_obs(rec: dict) -> tuple[str, TrackObservations, float | None]:
    """(source, observations, t_last) of an :func:`obs_record`. Raises RecordError."""
    try:
        n = int(rec["n"])
        track = np.array([str(x) for x in rec["track"]], dtype=object)
        kp = np.array([str(x) for x in rec["keypoint"]], dtype=object)
        obs = TrackObservations(track.reshape(n), b64_array(rec["t"], "<f8", n).copy(), kp.reshape(n),
                                b64_array(rec["xyz"], "<f8", 3 * n).reshape(n, 3).copy(),
                                b64_array(rec["score"], "<f8", n).copy())
        if not (np.isfinite(obs.t).all() and np.isfinite(obs.xyz).all()):
            raise RecordError("non-finite times or positions")
        t_last = rec.get("t_last")
        return str(rec["source"]), obs, (None if t_last is None else float(t_last))
    except (KeyError, TypeError, ValueError) as exc:
        raise RecordError(f"bad observation record: {exc}") from None
