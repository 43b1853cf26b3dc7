"""Per-controller stream repair (pure Python + NumPy): a shelf controller's decoded messages put in sequence order
on one continuous timeline, with duplicates, late and reordered messages, gaps, restarts, clock jumps and bad values
handled as the payload specification in ``sensors.ingest`` says (its table of bad input). The Django shell
(``sensors.live``) keeps one :class:`ControllerStream` per controller and feeds its blocks to the detector.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from .ingest import (
    MAX_BINS, REORDER_JUMP_MAX, RELEASED_RUNS, IngestConfig, IngestProblem, IngestResult, PayloadError,
    SampleBlock, WeightMessage, decode_payload,
)


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
