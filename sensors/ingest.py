"""Shelf-controller ingestion: payload decoding, validation and per-controller stream repair (pure Python + NumPy).

A shelf controller samples its load cells on one clock and sends one message per block of samples, over MQTT
(the production path, topic :func:`weights_topic`) or HTTP (``sensors/api.py``); both carry the same payload.
This module decodes those bytes into typed :class:`SampleBlock` s and :class:`IngestProblem` s that say what was
wrong; ``sensors.ingest_stream.ControllerStream`` puts each controller's blocks in time order and repairs what
can be repaired, as the table below says. No Django: the shell (``sensors/services.py``) authenticates,
counts problems per controller in the database and feeds the blocks to the pipeline.

Payload, version 1 (a JSON object; this docstring is its specification for controller firmware)::

    {"v": 1,                      # payload version
     "controller": "g1",          # the controller's name (must match the topic / the authenticated controller)
     "seq": 1234,                 # message sequence number, +1 per message (0 … 2**53)
     "t0": 1587531994.630,        # time of the FIRST sample, s since epoch UTC, controller clock
     "rate_hz": 60,               # sample rate (must equal the registered rate)
     "n": 12,                     # samples in this block (1 … MAX_SAMPLES)
     "bins": 72,                  # columns: the controller's registered bins, in registered order
     "dtype": "<f4",              # little-endian float32 grams (the only type)
     "data": "<base64>",          # n × bins float32, row-major [sample, bin]; NaN = no reading
     "key": "<api key>"}          # MQTT only: the controller's API key (HTTP sends it in a header)

A 12 × 72 block (0.2 s of one 72-plate gondola at 60 Hz) is 3,456 bytes of samples, ≈ 4.7 kB of JSON.

What happens to bad input (every case is an :class:`IngestProblem` with a ``reason`` from :data:`REASONS`;
``repaired`` tells whether the data was kept):

===================  ===========================================================================================
``malformed_json``   not UTF-8 JSON, or not an object → message rejected
``bad_base64``       ``data`` is not valid base64 → rejected
``bad_field``        a field is missing, of the wrong type or out of range (version, rate, dtype, seq, t0) → rejected
``bad_shape``        ``bins`` ≠ the registered bin count, ``n`` out of range, or the byte count ≠ n × bins × 4
                     → rejected
``wrong_controller`` the payload names another controller than the topic / credentials → rejected
``duplicate``        a sequence number already accepted (or already waiting), with the time it had then (runs of
                     released numbers are remembered, so a re-delivery minutes later is still one) → rejected (no
                     data lost)
``late``             a sequence number that was given up as lost (its gap was reported) arriving after all →
                     rejected, its samples counted lost
``reordered``        arrived before an earlier one; held (at most ``reorder_depth`` messages) and released in
                     order → repaired (a number more than ``REORDER_JUMP_MAX`` ahead is not held: a gap or restart)
``gap``              sequence numbers missing → reported with the samples lost and the time span; the next block
                     is fed as is, and the detector leaves NaN rows there (never interpolated)
``sequence_reset``   the sequence number went back while time went forward (controller restart), or jumped
                     forward while the clock moved on by less than the count says and no sample is missing by the
                     clock (a restart from a stored counter) → accepted on the controller's own clock. A forward
                     jump that the clock shows to have lost samples is a ``gap`` of those samples; a sequence
                     number never makes a sane clock "jump".
``clock_jump``       a block's time is before the last sample, or later than the sample count since the last one
                     allows, by more than
                     ``clock_tolerance_s`` → re-timed onto the continuous timeline (the correction is kept for the
                     following blocks and reported) → repaired
``non_finite``       ±inf samples → set to NaN (missing) → repaired
``out_of_range``     |grams| > ``max_abs_g`` (a plate reading beyond any load cell's range) → NaN → repaired
``nan_burst``        a bin with ≥ ``nan_burst_min`` consecutive missing samples (reported once when it starts) →
                     kept as NaN; the detector treats it as a gap
===================  ===========================================================================================
"""
from __future__ import annotations

import base64
import binascii
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from store.checks import T_UTC_MAX, T_UTC_MIN, check_array, check_numbers

#: Earliest plausible sample time, s since epoch UTC (2000-01-01, ``store.checks.T_UTC_MIN``): an unset controller
#: clock (1970) is broken, and such a block would otherwise be "re-timed" as a clock jump of decades.
T0_MIN = T_UTC_MIN
#: Latest plausible sample time, s since epoch UTC (2100-01-01, ``store.checks.T_UTC_MAX``): a controller clock beyond
#: it is broken, and such a value would otherwise be "re-timed" by an absurd correction.
T0_MAX = T_UTC_MAX

PAYLOAD_VERSION = 1
#: The only sample encoding: little-endian IEEE-754 float32 grams (what the AiFi controllers send, and 24-bit
#: HX711-class ADC counts scaled to grams fit it without loss).
DTYPE = "<f4"
#: Most samples in one message (a few seconds at 60 Hz): bounds memory per message.
MAX_SAMPLES = 1024
#: A message more sequence numbers ahead of the next expected one than this is not held for reordering (a
#: controller's retry overtakes a message or two, never 16): it is released at once, as a gap or a restart.
REORDER_JUMP_MAX = 16
#: Runs of consecutive released sequence numbers a stream remembers to tell a late re-delivery (a duplicate) from
#: a message that was given up as lost (late); a new run starts at each gap.
RELEASED_RUNS = 64
#: Most bins on one controller.
MAX_BINS = 1024
#: Largest message accepted, bytes (a full MAX_SAMPLES × 128-bin block in base64 is ~700 kB).
MAX_PAYLOAD_BYTES = 2 * 1024 * 1024

REASONS = ("malformed_json", "bad_base64", "bad_field", "bad_shape", "wrong_controller", "duplicate", "late",
           "reordered", "gap", "sequence_reset", "clock_jump", "non_finite", "out_of_range", "nan_burst",
           "unauthenticated")


def weights_topic(store: str, controller: str) -> str:
    """MQTT topic a controller publishes its weight blocks on: ``walkout/<store>/shelf/<controller>/weights``.

    ``store`` is ``Store.code``, ``controller`` ``ShelfController.name``; both must be non-empty and free of
    ``/``, ``+``, ``#``. Raises ``ValueError`` otherwise."""
    for name, value in (("store", store), ("controller", controller)):
        if not value or any(c in value for c in "/+#\x00"):
            raise ValueError(f"{name} {value!r} cannot be an MQTT topic level")
    return f"walkout/{store}/shelf/{controller}/weights"


#: Subscription that covers every store's controllers (QoS 1: at least once; duplicates are dropped by seq).
WEIGHTS_SUBSCRIPTION = "walkout/+/shelf/+/weights"


def parse_topic(topic: str) -> tuple[str, str]:
    """``walkout/<store>/shelf/<controller>/weights`` → (store, controller). Raises ``ValueError`` otherwise."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "walkout" or parts[2] != "shelf" or parts[4] != "weights" \
            or not parts[1] or not parts[3]:
        raise ValueError(f"topic {topic!r} is not walkout/<store>/shelf/<controller>/weights")
    return parts[1], parts[3]


# --------------------------------------------------------------------------------------------- typed containers
class PayloadError(ValueError):
    """A message that cannot be used. ``reason`` is one of :data:`REASONS`; ``seq`` the message's sequence number
    when it could be read (else None)."""

    def __init__(self, reason: str, message: str, *, seq: int | None = None) -> None:
        assert reason in REASONS, reason
        super().__init__(message)
        self.reason = reason
        self.seq = seq


@dataclass(frozen=True)
class WeightMessage:
    """One decoded, well-formed message. ``seq`` int ≥ 0; ``t0`` float s UTC (controller clock) of the first
    sample; ``rate_hz`` float > 0; ``grams`` (n, B) float64 grams as sent (NaN = missing, ±inf kept for the
    stream to count); ``key`` the API key carried in the payload (MQTT) or None."""

    controller: str
    seq: int
    t0: float
    rate_hz: float
    grams: np.ndarray
    key: str | None = None

    @property
    def n(self) -> int:
        """Samples in the block."""
        return int(self.grams.shape[0])


@dataclass(frozen=True)
class SampleBlock:
    """Samples of one controller ready for the detector: ``t`` (n,) float64 s UTC on the repaired controller
    timeline (strictly increasing, after the previous block of the controller), ``grams`` (n, B) float64 grams
    (NaN = missing), ``rate_hz``, ``seq`` the message it came from, ``received_at`` s UTC (server clock) when
    the message arrived. Raises ``ValueError`` on inconsistent shapes."""

    controller: str
    seq: int
    t: np.ndarray
    grams: np.ndarray
    rate_hz: float
    received_at: float

    def __post_init__(self) -> None:
        (n,) = check_array("SampleBlock.t", self.t, (None,), np.float64)
        check_array("SampleBlock.grams", self.grams, (n, None), np.float64)

    def __len__(self) -> int:
        return int(self.t.shape[0])


@dataclass(frozen=True)
class IngestProblem:
    """Something wrong with a controller's input: ``reason`` (:data:`REASONS`), a human ``message`` naming the
    controller, sequence number and what was done; ``seq`` (None when unreadable); ``repaired`` True when the data
    was kept (re-timed, reordered, values set to missing); ``samples_lost`` rows lost (rejected or missing)."""

    controller: str
    reason: str
    message: str
    seq: int | None = None
    repaired: bool = False
    samples_lost: int = 0


@dataclass(frozen=True)
class IngestResult:
    """What one message (or a flush) produced: ``blocks`` in time order and the ``problems`` found."""

    blocks: tuple[SampleBlock, ...] = ()
    problems: tuple[IngestProblem, ...] = ()


@dataclass(frozen=True)
class IngestConfig:
    """Knobs of ``sensors.ingest_stream.ControllerStream``. Times in seconds, weights in grams.

    - ``reorder_depth = 2``: messages held while waiting for a missing one (0.4 s at 12 samples / 60 Hz), then
      the missing one is declared lost. MQTT QoS 1 on one connection keeps order; reordering comes from a
      controller's retry after a timeout, which resends within a message or two.
    - ``clock_tolerance_s = 0.1``: a block's time may differ from the count of samples since the previous block
      by this much (6 periods at 60 Hz) before it is a clock jump; controller crystals drift by ≤ 100 ppm
      (≤ 0.1 ms per second), NTP steps are tens of ms to seconds.
    - ``max_abs_g = 100_000``: no shelf load cell reads beyond 100 kg (the AutoCheckout plates are 20 kg cells).
    - ``nan_burst_min = 6``: consecutive missing samples of a bin that make a burst (0.1 s at 60 Hz; single
      dropped samples are normal on HX711 boards and the detector bridges them).
    - ``hold_s = 1.0``: a held message is released (and the missing one declared lost) after this much wall time
      even if no further message arrives (``ControllerStream.poll``).
    """

    reorder_depth: int = 2
    clock_tolerance_s: float = 0.1
    max_abs_g: float = 100_000.0
    nan_burst_min: int = 6
    hold_s: float = 1.0

    def __post_init__(self) -> None:
        check_numbers(self, ("reorder_depth",), low=0, integer=True)
        check_numbers(self, ("nan_burst_min",), low=1, integer=True)
        check_numbers(self, ("clock_tolerance_s", "max_abs_g", "hold_s"), low=0, low_open=True)


# --------------------------------------------------------------------------------------------- decoding
def _field(doc: Mapping[str, Any], name: str, kinds: tuple[type, ...], seq: int | None) -> Any:
    if name not in doc:
        raise PayloadError("bad_field", f"missing field {name!r}", seq=seq)
    value = doc[name]
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise PayloadError("bad_field", f"field {name!r} must be {'/'.join(k.__name__ for k in kinds)}, got "
                                        f"{type(value).__name__}", seq=seq)
    return value


#: Most ``[`` and ``{`` a message may hold. A version-1 payload has one ``{`` and none in its values; the bound
#: keeps ``json.loads`` far from Python's recursion limit whatever a client sends (``[`` × 100,000 raised
#: ``RecursionError`` before it was checked).
MAX_NESTING = 32


def parse_json(raw: bytes | str) -> Any:
    """The JSON value of one message body (bytes or str), for the worker's key check and :func:`decode_payload`.

    Never raises anything but :class:`PayloadError` (``malformed_json``), whatever ``raw`` holds: it refuses a body
    over :data:`MAX_PAYLOAD_BYTES` or with more than :data:`MAX_NESTING` opening brackets before parsing, and maps
    every parser error (invalid UTF-8, syntax, integers beyond Python's digit limit) to that reason."""
    if not isinstance(raw, (bytes, bytearray, memoryview, str)):
        raise PayloadError("malformed_json", f"payload must be bytes or text, got {type(raw).__name__}")
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise PayloadError("malformed_json", f"message of {len(raw)} bytes exceeds {MAX_PAYLOAD_BYTES}")
    if isinstance(raw, memoryview):
        raw = raw.tobytes()
    opens = raw.count("[") + raw.count("{") if isinstance(raw, str) else raw.count(b"[") + raw.count(b"{")
    if opens > MAX_NESTING:
        raise PayloadError("malformed_json", f"{opens} opening brackets; a payload holds at most {MAX_NESTING}")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError, TypeError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise PayloadError("malformed_json", f"not JSON: {str(exc)[:200]}") from None


def _float(value: int | float, name: str, seq: int | None) -> float:
    try:
        return float(value)
    except OverflowError:  # an integer of hundreds of digits
        raise PayloadError("bad_field", f"field {name!r} is out of range", seq=seq) from None


def decode_payload(raw: bytes | str | Mapping[str, Any], *, controller: str, n_bins: int, rate_hz: float,
                   ) -> WeightMessage:
    """Decode and validate one message for ``controller`` (registered with ``n_bins`` bins at ``rate_hz``).

    ``raw`` is the message body (bytes or str of JSON, or an already parsed mapping). Returns a
    :class:`WeightMessage` with ``grams`` (n, n_bins) float64. Raises :class:`PayloadError` with the reason
    (``malformed_json``, ``bad_field``, ``bad_base64``, ``bad_shape``, ``wrong_controller``) and a message naming
    the field; nothing is kept of a rejected message.
    """
    doc = raw if isinstance(raw, Mapping) else parse_json(raw)
    if not isinstance(doc, Mapping):
        raise PayloadError("malformed_json", f"payload must be a JSON object, got {type(doc).__name__}")
    seq_raw = doc.get("seq")
    seq = seq_raw if isinstance(seq_raw, int) and not isinstance(seq_raw, bool) and seq_raw >= 0 else None
    version = _field(doc, "v", (int,), seq)
    if version != PAYLOAD_VERSION:
        raise PayloadError("bad_field", f"payload version {version} is not supported (this reads "
                                        f"{PAYLOAD_VERSION})", seq=seq)
    name = _field(doc, "controller", (str,), seq)
    if name != controller:
        raise PayloadError("wrong_controller", f"payload names controller {name!r}, expected {controller!r}",
                           seq=seq)
    seq_v = _field(doc, "seq", (int,), seq)
    if not 0 <= seq_v <= 2 ** 53:
        raise PayloadError("bad_field", f"seq must be in 0 … 2**53, got {seq_v}", seq=None)
    t0 = _float(_field(doc, "t0", (int, float), seq), "t0", seq)
    if not (math.isfinite(t0) and T0_MIN <= t0 <= T0_MAX):
        raise PayloadError("bad_field", f"t0 must be a time from 2000-01-01 to 2100-01-01 UTC in seconds since the "
                                        f"epoch, got {t0}", seq=seq)
    rate = _float(_field(doc, "rate_hz", (int, float), seq), "rate_hz", seq)
    if not (math.isfinite(rate) and rate > 0) or abs(rate - rate_hz) > 1e-6 * rate_hz:
        raise PayloadError("bad_field", f"rate_hz {rate} differs from the registered {rate_hz:g} Hz", seq=seq)
    dtype = _field(doc, "dtype", (str,), seq)
    if dtype != DTYPE:
        raise PayloadError("bad_field", f"dtype must be {DTYPE!r}, got {dtype!r}", seq=seq)
    n = _field(doc, "n", (int,), seq)
    bins = _field(doc, "bins", (int,), seq)
    if not 1 <= n <= MAX_SAMPLES:
        raise PayloadError("bad_shape", f"n must be 1 … {MAX_SAMPLES}, got {n}", seq=seq)
    if bins != n_bins:
        raise PayloadError("bad_shape", f"bins = {bins}, but the controller is registered with {n_bins} bins",
                           seq=seq)
    data = _field(doc, "data", (str,), seq)
    try:
        buf = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise PayloadError("bad_base64", f"data is not base64: {exc}", seq=seq) from None
    if len(buf) != 4 * n * bins:
        raise PayloadError("bad_shape", f"data holds {len(buf)} bytes; n × bins × 4 = {4 * n * bins}", seq=seq)
    key = doc.get("key")
    if key is not None and not isinstance(key, str):
        raise PayloadError("bad_field", "field 'key' must be a string", seq=seq)
    grams = np.frombuffer(buf, dtype=DTYPE).reshape(n, bins).astype(np.float64)
    return WeightMessage(controller=controller, seq=int(seq_v), t0=t0, rate_hz=rate, grams=grams, key=key)


def encode_payload(*, controller: str, seq: int, t0: float, rate_hz: float, grams: np.ndarray,
                   key: str | None = None) -> bytes:
    """The payload of one block (the inverse of :func:`decode_payload`): ``grams`` (n, B) grams → JSON bytes.

    What a controller (and the tests, the benchmark and file replay) sends. Raises ``ValueError`` for a
    ``grams`` that is not 2-D."""
    grams = np.asarray(grams)
    if grams.ndim != 2:
        raise ValueError(f"grams must be (n, B), got {grams.shape}")
    doc = {"v": PAYLOAD_VERSION, "controller": controller, "seq": int(seq), "t0": round(float(t0), 6),
           "rate_hz": float(rate_hz), "n": int(grams.shape[0]), "bins": int(grams.shape[1]), "dtype": DTYPE,
           "data": base64.b64encode(np.ascontiguousarray(grams, dtype=DTYPE).tobytes()).decode("ascii")}
    if key is not None:
        doc["key"] = key
    return json.dumps(doc, separators=(",", ":")).encode("utf-8")
