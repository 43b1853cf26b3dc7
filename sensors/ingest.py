"""Shelf-controller ingestion: payload decoding, validation and per-controller stream repair (pure Python + NumPy).

A shelf controller samples its load cells on one clock and sends one message per block of samples, over MQTT
(the production path, topic :func:`weights_topic`) or HTTP (``sensors/api.py``); both carry the same payload.
This module turns those bytes into typed :class:`SampleBlock` s in time order, plus :class:`IngestProblem` s
that say what was wrong and what was done about it. No Django: the shell (``sensors/services.py``) authenticates,
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
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from store.checks import check_array, check_numbers

#: Latest plausible sample time, s since epoch UTC (2100-01-01): a controller clock beyond it is broken, and such a
#: value would otherwise be "re-timed" by an absurd correction.
T0_MAX = 4_102_444_800.0

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
    """Knobs of :class:`ControllerStream`. Times in seconds, weights in grams.

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
      even if no further message arrives (:meth:`ControllerStream.poll`).
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
    if not (math.isfinite(t0) and 0 < t0 <= T0_MAX):
        raise PayloadError("bad_field", f"t0 must be a positive time before 2100-01-01 UTC in seconds since the "
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


# --------------------------------------------------------------------------------------------- stream state
@dataclass
class StreamCounters:
    """Running totals of one controller stream: messages accepted, blocks released, samples (rows) released,
    and problems by reason."""

    messages: int = 0
    blocks: int = 0
    samples: int = 0
    problems: dict[str, int] = field(default_factory=dict)


class ControllerStream:
    """Per-controller state: ordering by sequence number, a continuous timeline, value checks.

    ``controller`` name; ``n_bins`` and ``rate_hz`` as registered. Call :meth:`accept` with each decoded message
    (or :meth:`accept_raw` with its bytes) and the server's receive time; :meth:`poll` with the current time to
    release messages held too long; :meth:`flush` at the end of a stream. Every call returns an
    :class:`IngestResult`: the blocks to feed the detector, in time order, and the problems. Not thread-safe.
    """

    def __init__(self, controller: str, n_bins: int, rate_hz: float, config: IngestConfig = IngestConfig()):
        if not controller:
            raise ValueError("controller must be a non-empty name")
        if isinstance(n_bins, bool) or not isinstance(n_bins, int) or not 1 <= n_bins <= MAX_BINS:
            raise ValueError(f"n_bins must be an integer in 1 … {MAX_BINS}, got {n_bins!r}")
        if not (isinstance(rate_hz, (int, float)) and math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
        self.controller = controller
        self.n_bins = n_bins
        self.rate_hz = float(rate_hz)
        self.config = config
        self.counters = StreamCounters()
        self._held: dict[int, tuple[WeightMessage, float]] = {}
        self._recent: dict[int, float] = {}    # seq → t0 of the last 256 released messages (duplicates)
        # runs of consecutive released seqs, [first seq, last seq, lowest t0, highest t0] (controller clock), the
        # last RELEASED_RUNS of them: a re-delivery older than the 256 above is still known as a duplicate
        self._runs: list[list[float]] = []
        self._last_seq: int | None = None
        self._last_t: float = -math.inf        # last released sample time (repaired timeline)
        self._last_n = 0
        self._correction = 0.0                  # added to the controller's times (clock-jump repairs)
        self._nan_run = np.zeros(n_bins, np.int64)
        self._in_burst = np.zeros(n_bins, bool)

    # ------------------------------------------------------------------------------------------------ public
    @property
    def clock_correction_s(self) -> float:
        """Seconds added to the controller's own times so far (the sum of clock-jump repairs)."""
        return self._correction

    @property
    def last_t(self) -> float:
        """Time of the last released sample, s UTC (−inf before any)."""
        return self._last_t

    def accept_raw(self, raw: bytes | str | Mapping[str, Any], received_at: float) -> IngestResult:
        """Decode ``raw`` (see :func:`decode_payload`) and :meth:`accept` it; a payload error becomes a problem
        (nothing else of the stream is affected)."""
        try:
            msg = decode_payload(raw, controller=self.controller, n_bins=self.n_bins, rate_hz=self.rate_hz)
        except PayloadError as exc:
            return IngestResult(problems=(self._problem(exc.reason, str(exc), exc.seq),))
        return self.accept(msg, received_at)

    def accept(self, msg: WeightMessage, received_at: float) -> IngestResult:
        """Take one decoded message received at ``received_at`` (s UTC, server clock). Returns the blocks that can
        be released now (this one and any it unblocked) and the problems. Raises ``ValueError`` when ``msg`` is
        for another controller or has the wrong number of bins (the shell decodes with this stream's values)."""
        if msg.controller != self.controller or msg.grams.shape[1] != self.n_bins:
            raise ValueError(f"message for {msg.controller!r} with {msg.grams.shape[1]} bins given to the stream of "
                             f"{self.controller!r} ({self.n_bins} bins)")
        problems: list[IngestProblem] = []
        blocks: list[SampleBlock] = []
        seq = msg.seq
        if seq in self._held or self._recent.get(seq) == msg.t0 or self._was_released(seq, msg.t0):
            return IngestResult(problems=(self._problem("duplicate", f"seq {seq} already received; dropped", seq),))
        self.counters.messages += 1
        if self._last_seq is not None and seq <= self._last_seq:
            t0c = msg.t0 + self._correction
            if t0c > self._last_t + 1.0 and seq < self._last_seq - self.config.reorder_depth - 1:
                # the sequence went back while time went on: the controller restarted
                problems.append(self._problem("sequence_reset", f"seq went back from {self._last_seq} to {seq} "
                                              f"with time moving on: controller restart; accepted", seq,
                                              repaired=True))
                problems.extend(self._release_all_held(blocks))
                self._last_seq = None  # a new timeline: its first block is taken at its own time
            else:
                return IngestResult(problems=(self._problem(
                    "late", f"seq {seq} arrived after seq {self._last_seq} was released (its gap was already "
                    f"reported); dropped", seq, lost=msg.n),))
        expected = None if self._last_seq is None else self._last_seq + 1
        if expected is None or seq == expected:
            problems.extend(self._release(msg, received_at, blocks))
            problems.extend(self._release_consecutive(blocks))
        elif seq - expected > REORDER_JUMP_MAX:
            # too far ahead to be a retry overtaking a message: a restart from a stored counter, or a long loss.
            # Nothing to wait for: what was held goes first, then this one (its gap is reported on release).
            problems.extend(self._release_all_held(blocks))
            problems.extend(self._release(msg, received_at, blocks))
        else:
            self._held[seq] = (msg, received_at)
            problems.append(self._problem("reordered", f"seq {seq} arrived before seq {expected}; held", seq,
                                          repaired=True))
            while len(self._held) > self.config.reorder_depth:
                problems.extend(self._release_lowest(blocks))
        return IngestResult(tuple(blocks), tuple(problems))

    def poll(self, now: float) -> IngestResult:
        """Release messages held longer than ``hold_s`` before ``now`` (s UTC), declaring the missing ones lost."""
        blocks: list[SampleBlock] = []
        problems: list[IngestProblem] = []
        while self._held and min(r for _, r in self._held.values()) + self.config.hold_s <= now:
            problems.extend(self._release_lowest(blocks))
        return IngestResult(tuple(blocks), tuple(problems))

    def flush(self) -> IngestResult:
        """End of the stream (or of a connection): release everything held."""
        blocks: list[SampleBlock] = []
        problems = self._release_all_held(blocks)
        return IngestResult(tuple(blocks), tuple(problems))

    # ------------------------------------------------------------------------------------------------ inside
    def _was_released(self, seq: int, t0: float) -> bool:
        """True when ``seq`` lies in a run of released messages whose controller times span ``t0`` (a late
        re-delivery of a message already fed; a restarted controller re-using the number has another time)."""
        tol = self.config.clock_tolerance_s
        return any(lo <= seq <= hi and t_lo - tol <= t0 <= t_hi + tol for lo, hi, t_lo, t_hi in self._runs)

    def _remember(self, seq: int, t0: float) -> None:
        self._recent[seq] = t0
        if len(self._recent) > 256:
            del self._recent[next(iter(self._recent))]
        run = self._runs[-1] if self._runs else None
        if run is not None and run[1] == seq - 1:
            run[1] = seq
            run[2], run[3] = min(run[2], t0), max(run[3], t0)
        else:
            self._runs.append([seq, seq, t0, t0])
            if len(self._runs) > RELEASED_RUNS:
                del self._runs[0]

    def _problem(self, reason: str, message: str, seq: int | None, *, repaired: bool = False,
                 lost: int = 0) -> IngestProblem:
        self.counters.problems[reason] = self.counters.problems.get(reason, 0) + 1
        return IngestProblem(self.controller, reason, f"controller {self.controller}: {message}", seq, repaired,
                             lost)

    def _release_all_held(self, blocks: list[SampleBlock]) -> list[IngestProblem]:
        problems: list[IngestProblem] = []
        while self._held:
            problems.extend(self._release_lowest(blocks))
        return problems

    def _release_lowest(self, blocks: list[SampleBlock]) -> list[IngestProblem]:
        seq = min(self._held)
        msg, received = self._held.pop(seq)
        problems = self._release(msg, received, blocks)
        problems.extend(self._release_consecutive(blocks))
        return problems

    def _release_consecutive(self, blocks: list[SampleBlock]) -> list[IngestProblem]:
        problems: list[IngestProblem] = []
        while self._last_seq is not None and self._last_seq + 1 in self._held:
            msg, received = self._held.pop(self._last_seq + 1)
            problems.extend(self._release(msg, received, blocks))
        return problems

    def _release(self, msg: WeightMessage, received_at: float, blocks: list[SampleBlock]) -> list[IngestProblem]:
        cfg = self.config
        problems: list[IngestProblem] = []
        period = 1.0 / self.rate_hz
        t0 = msg.t0 + self._correction
        if self._last_seq is not None:
            missing = msg.seq - self._last_seq - 1
            expected = self._last_t + period * (1 + max(missing, 0) * self._last_n)
            after = self._last_t + period                  # the sample right after the last one released
        if self._last_seq is not None and missing > 0 and after - cfg.clock_tolerance_s <= t0 \
                < expected - cfg.clock_tolerance_s:
            # the sequence number ran ahead of the clock: a controller restarted from a stored counter or skipped
            # numbers. Its clock moved on, by less than the count says: a sane clock is never re-timed because of
            # a sequence number; the samples keep their own time and the loss is what the clock shows.
            t0 = max(t0, after)
            lost = max(0, int(round((t0 - after) * self.rate_hz)))
            text = (f"seq jumped from {self._last_seq} to {msg.seq} while the clock moved on {t0 - self._last_t:.3f} s "
                    f"(the count says {expected - self._last_t:.3f} s): controller restart or skipped numbers; "
                    f"samples kept on the controller's clock")
            if lost:
                problems.append(self._problem("gap", f"{text}; ≈ {lost} samples missing ({after:.3f}–"
                                              f"{t0 - period:.3f} s), left as missing samples", msg.seq, lost=lost))
            else:
                problems.append(self._problem("sequence_reset", f"{text}; no sample missing", msg.seq,
                                              repaired=True))
        elif self._last_seq is not None:
            if missing > 0:
                lost = missing * self._last_n
                problems.append(self._problem(
                    "gap", f"{missing} message(s) missing before seq {msg.seq} (seqs {self._last_seq + 1}–"
                    f"{msg.seq - 1}, ≈ {lost} samples, {self._last_t + period:.3f}–{expected - period:.3f} s); "
                    f"left as missing samples", msg.seq, lost=lost))
            jump = t0 - expected
            if abs(jump) > cfg.clock_tolerance_s:
                self._correction -= jump
                problems.append(self._problem(
                    "clock_jump", f"seq {msg.seq}: block time {msg.t0:.3f} is {jump:+.3f} s off the sample count "
                    f"since seq {self._last_seq}; re-timed (correction now {self._correction:+.3f} s)", msg.seq,
                    repaired=True))
                t0 = expected
            elif t0 <= self._last_t:
                t0 = expected
        elif t0 <= self._last_t:  # after a restart, a clock behind the samples already released
            jump = t0 - (self._last_t + period)
            self._correction -= jump
            problems.append(self._problem(
                "clock_jump", f"seq {msg.seq}: block time {msg.t0:.3f} is not after the last sample released "
                f"({self._last_t:.3f}); re-timed (correction now {self._correction:+.3f} s)", msg.seq, repaired=True))
            t0 = self._last_t + period
        t = t0 + np.arange(msg.n, dtype=np.float64) * period
        x = msg.grams.copy()
        inf = np.isinf(x)
        if inf.any():
            x[inf] = np.nan
            problems.append(self._problem("non_finite", f"seq {msg.seq}: {int(inf.sum())} infinite sample(s) in "
                                          f"bin column(s) {_cols(inf)}; set to missing", msg.seq, repaired=True))
        big = np.abs(x) > cfg.max_abs_g
        if big.any():
            x[big] = np.nan
            problems.append(self._problem("out_of_range", f"seq {msg.seq}: {int(big.sum())} sample(s) beyond "
                                          f"±{cfg.max_abs_g:g} g in bin column(s) {_cols(big)}; set to missing",
                                          msg.seq, repaired=True))
        problems.extend(self._nan_bursts(x, msg.seq))
        self._last_seq = msg.seq
        self._last_t = float(t[-1])
        self._last_n = msg.n
        self._remember(msg.seq, msg.t0)
        self.counters.blocks += 1
        self.counters.samples += msg.n
        blocks.append(SampleBlock(self.controller, msg.seq, t, x, self.rate_hz, received_at))
        return problems

    def _nan_bursts(self, x: np.ndarray, seq: int) -> list[IngestProblem]:
        """Track runs of missing samples per bin; report a run once, when it reaches ``nan_burst_min``."""
        nan = np.isnan(x)
        run = self._nan_run
        started: list[int] = []
        if not nan.any():
            run[:] = 0
            self._in_burst[:] = False
            return []
        for i in range(x.shape[0]):
            run = np.where(nan[i], run + 1, 0)
            new = (run >= self.config.nan_burst_min) & ~self._in_burst
            if new.any():
                started.extend(int(b) for b in np.flatnonzero(new))
                self._in_burst |= new
            self._in_burst &= run > 0
        self._nan_run = run
        if not started:
            return []
        return [self._problem("nan_burst", f"seq {seq}: bin column(s) {','.join(map(str, started))} stopped "
                              f"reporting (≥ {self.config.nan_burst_min} missing samples); kept as missing",
                              seq, repaired=True)]


def _cols(mask: np.ndarray) -> str:
    cols = np.flatnonzero(mask.any(axis=0))
    text = ",".join(str(int(c)) for c in cols[:10])
    return text + (f" (+{cols.size - 10} more)" if cols.size > 10 else "")
