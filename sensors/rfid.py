"""RFID item tags (pure Python, no Django): EPC SGTIN-96 decoding, reader payloads, shelf take/return detection from
read gaps, exit-lane attribution and charging rules (the simulator of tag reads is offline tooling:
``carts.offline.rfid_simulation``).

Why: tagged goods that no weight plate sees (clothing on rails) must still reach the receipt when they leave with a
shopper, and a tagged item must never be charged twice. The EPC binary is decoded by ``epcpy`` (Nedap Retail's
implementation of the GS1 EPC Tag Data Standard), never by hand; this module only checks the input's shape and maps
the library's answer onto the catalogue's barcodes. The Django shell is :mod:`sensors.rfid_live`.

Reader payload, version 1 (a JSON object; this docstring is its specification for reader firmware)::

    {"v": 1,
     "store": "s1",               # Store.code of the reader's store (a reader of another store is refused)
     "reader": "door-1",          # the reader's name (must match the topic / the authenticated reader)
     "seq": 17,                   # message sequence number, +1 per message (0 … 2**53): duplicates are dropped
     "reads": [{"t": 1700000000.25,   # read time, s since epoch UTC, reader clock
                "antenna": 2,         # the reader's antenna port (registered: a shelf bin or an exit lane)
                "epc": "3074257BF7194E4000001A85",   # EPC memory bank, 96-bit SGTIN as 24 hex digits
                "rssi": -61.5}],      # received signal strength, dBm (-120 … 0)
     "key": "<api key>"}          # MQTT only: the reader's API key (HTTP sends it in a header)

A read with a malformed EPC (not 24 hex digits, not SGTIN-96, an invalid partition…), an unregistered antenna or a
bad field is rejected with its reason and counted; the other reads of the message are kept.
"""
from __future__ import annotations

import bisect
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from store.checks import check_numbers

PAYLOAD_VERSION = 1
#: Most reads in one message (a portal reads ~700 tags/s; a message covers at most a few seconds).
MAX_READS = 5000
#: Largest message accepted, bytes.
MAX_PAYLOAD_BYTES = 1024 * 1024
#: Reasons a reader message or read is refused or repaired (``ReaderProblem.reason``).
REASONS = ("malformed_json", "bad_field", "wrong_reader", "wrong_store", "duplicate", "bad_epc", "not_sgtin",
           "unknown_antenna", "unknown_product", "unauthenticated")
#: Plausible read times, s since epoch UTC (2001 … 2100).
T_MIN, T_MAX = 1.0e9, 4_102_444_800.0
_HEX24 = re.compile(r"[0-9A-Fa-f]{24}")


def reads_topic(store: str, reader: str) -> str:
    """MQTT topic a reader publishes on: ``walkout/<store>/rfid/<reader>/reads`` (beside the shelf controllers'
    ``walkout/<store>/shelf/<controller>/weights``). Raises ``ValueError`` for a level with ``/``, ``+``, ``#``."""
    for name, value in (("store", store), ("reader", reader)):
        if not value or any(c in value for c in "/+#\x00"):
            raise ValueError(f"{name} {value!r} cannot be an MQTT topic level")
    return f"walkout/{store}/rfid/{reader}/reads"


#: Subscription covering every store's readers.
READS_SUBSCRIPTION = "walkout/+/rfid/+/reads"


def parse_reads_topic(topic: str) -> tuple[str, str]:
    """``walkout/<store>/rfid/<reader>/reads`` → (store, reader). Raises ``ValueError`` otherwise."""
    parts = topic.split("/")
    if len(parts) != 5 or parts[0] != "walkout" or parts[2] != "rfid" or parts[4] != "reads" \
            or not parts[1] or not parts[3]:
        raise ValueError(f"topic {topic!r} is not walkout/<store>/rfid/<reader>/reads")
    return parts[1], parts[3]


# ------------------------------------------------------------------------------------------------- EPC decoding
class EpcError(ValueError):
    """An EPC that is not a usable SGTIN-96: ``reason`` ``bad_epc`` (not 24 hex digits, or the library refused its
    bits) or ``not_sgtin`` (a valid EPC of another scheme: SSCC, GRAI, a raw TID…)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class Sgtin:
    """One decoded SGTIN: ``epc`` the 24 upper-case hex digits read, ``uri`` the pure identity
    (``urn:epc:id:sgtin:<company prefix>.<indicator+item ref>.<serial>``), ``gtin`` the GTIN-14 (check digit
    included), ``serial`` the serial number (decimal text), ``filter`` the filter value (1: point-of-sale item)."""

    epc: str
    uri: str
    gtin: str
    serial: str
    filter: int

    @property
    def key(self) -> tuple[str, str]:
        """(GTIN-14, serial): the item's identity, whatever filter value it was encoded with."""
        return self.gtin, self.serial


def decode_sgtin96(epc: Any) -> Sgtin:
    """Decode a 96-bit SGTIN EPC given as 24 hex digits (either case) with ``epcpy``. Raises :class:`EpcError`."""
    if not isinstance(epc, str) or not _HEX24.fullmatch(epc):
        shown = repr(epc)[:40]
        raise EpcError("bad_epc", f"EPC {shown} is not 24 hexadecimal digits (96 bits)")
    epc = epc.upper()
    if epc[:2] != "30":
        raise EpcError("not_sgtin", f"EPC {epc} has header 0x{epc[:2]}, not SGTIN-96 (0x30)")
    from epcpy import hex_to_tag_encodable
    from epcpy.epc_schemes.sgtin import SGTIN
    from epcpy.utils.common import ConvertException

    try:
        tag = hex_to_tag_encodable(epc)
    except (ConvertException, ValueError, IndexError, KeyError) as exc:
        raise EpcError("bad_epc", f"EPC {epc} is not a valid SGTIN-96: {str(exc)[:120]}") from None
    if not isinstance(tag, SGTIN):
        raise EpcError("not_sgtin", f"EPC {epc} is a {type(tag).__name__}, not an SGTIN")
    return Sgtin(epc=epc, uri=tag.epc_uri, gtin=tag.gtin(), serial=tag.epc_uri.rsplit(".", 1)[1],
                 filter=int(epc[2], 16) >> 1)


def encode_sgtin96(gtin: str, serial: int, *, company_prefix_length: int = 7, filter_value: int = 1) -> str:
    """The 24 hex digits of the SGTIN-96 of ``gtin`` (GTIN-8/12/13/14 digits, check digit included) and ``serial``
    (0 … 2**38 − 1), through ``epcpy`` (tag writers, the simulator, tests). Raises ``ValueError``."""
    from epcpy.epc_schemes.sgtin import SGTIN, SGTINFilterValue
    from epcpy.utils.common import ConvertException

    if not (isinstance(serial, int) and 0 <= serial < 2 ** 38):
        raise ValueError(f"an SGTIN-96 serial is 0 … 2**38 - 1, got {serial!r}")
    try:
        tag = SGTIN.from_gtin_plus_serial(str(gtin).zfill(14), str(serial), company_prefix_length)
        return tag.hex(binary_coding_scheme=SGTIN.BinaryCodingScheme.SGTIN_96,
                       filter_value=SGTINFilterValue(str(filter_value))).upper()
    except (ConvertException, ValueError) as exc:
        raise ValueError(f"cannot encode GTIN {gtin} serial {serial}: {exc}") from None


def gtin14(barcode: str) -> str | None:
    """A catalogue barcode as a GTIN-14 (GTIN-8/12/13/14 digits left-padded with zeros), or None when it is not a
    GTIN (an internal code such as ``CHIPS``). The check digit is not recomputed: the catalogue's is kept."""
    barcode = str(barcode).strip()
    if barcode.isdigit() and len(barcode) in (8, 12, 13, 14):
        return barcode.zfill(14)
    return None


# ------------------------------------------------------------------------------------------------- payloads
@dataclass(frozen=True)
class TagRead:
    """One accepted read: ``t`` s UTC (reader clock), ``antenna`` port, ``tag`` the decoded SGTIN, ``rssi_dbm``."""

    t: float
    antenna: int
    tag: Sgtin
    rssi_dbm: float


@dataclass(frozen=True)
class ReadProblem:
    """What was wrong with a reader's message or one of its reads: ``reason`` (:data:`REASONS`), ``message`` (names
    the reader, sequence number and read), ``reads_lost`` reads rejected for it."""

    reason: str
    message: str
    reads_lost: int = 0


@dataclass(frozen=True)
class ReadsMessage:
    """A parsed message: ``seq`` (None when rejected before it was read), accepted ``reads`` in time order,
    ``problems``; ``rejected`` True when the whole message was refused."""

    seq: int | None
    reads: tuple[TagRead, ...]
    problems: tuple[ReadProblem, ...]
    rejected: bool = False


def encode_reads(*, store: str, reader: str, seq: int, reads: Iterable[tuple[float, int, str, float]],
                 key: str | None = None) -> bytes:
    """A version-1 payload of ``reads`` ((t s UTC, antenna, EPC hex, RSSI dBm), …): readers, the simulator, tests."""
    doc: dict[str, Any] = {"v": PAYLOAD_VERSION, "store": store, "reader": reader, "seq": int(seq),
                           "reads": [{"t": float(t), "antenna": int(a), "epc": e, "rssi": float(r)}
                                     for t, a, e, r in reads]}
    if key is not None:
        doc["key"] = key
    return json.dumps(doc, separators=(",", ":")).encode()


def _rejected(reason: str, message: str, n: int = 0, seq: int | None = None) -> ReadsMessage:
    return ReadsMessage(seq, (), (ReadProblem(reason, message, n),), rejected=True)


def parse_reads(payload: bytes | str | Mapping[str, Any], *, store: str, reader: str,
                antennas: Iterable[int]) -> ReadsMessage:
    """Validate one message of the authenticated ``reader`` of ``store`` (its code) whose registered antenna ports
    are ``antennas``. Never raises: a malformed body, a wrong version, reader or store rejects the message; a bad
    EPC, antenna, time or RSSI rejects that read only. Reads come back sorted by time."""
    where = f"reader {reader}"
    if isinstance(payload, Mapping):
        doc = payload
    else:
        if isinstance(payload, (bytes, bytearray)) and len(payload) > MAX_PAYLOAD_BYTES:
            return _rejected("malformed_json", f"{where}: message of {len(payload)} bytes exceeds {MAX_PAYLOAD_BYTES}")
        try:
            doc = json.loads(payload)
        except (ValueError, RecursionError, TypeError) as exc:
            return _rejected("malformed_json", f"{where}: not JSON: {str(exc)[:120]}")
    if not isinstance(doc, Mapping):
        return _rejected("malformed_json", f"{where}: the payload must be a JSON object")
    seq = doc.get("seq")
    if doc.get("v") != PAYLOAD_VERSION:
        return _rejected("bad_field", f"{where}: payload version {str(doc.get('v'))[:20]!r} is not {PAYLOAD_VERSION}")
    if not (isinstance(seq, int) and not isinstance(seq, bool) and 0 <= seq <= 2 ** 53):
        return _rejected("bad_field", f"{where}: seq must be an integer 0 … 2**53")
    if doc.get("store") != store:
        return _rejected("wrong_store", f"{where} of store {store}: payload names store "
                                        f"{str(doc.get('store'))[:64]!r}; refused", seq=seq)
    if doc.get("reader") != reader:
        return _rejected("wrong_reader", f"{where}: payload names reader {str(doc.get('reader'))[:64]!r}; refused",
                         seq=seq)
    items = doc.get("reads")
    if not isinstance(items, list) or len(items) > MAX_READS:
        return _rejected("bad_field", f"{where} seq {seq}: reads must be a list of at most {MAX_READS}", seq=seq)
    ports = set(antennas)
    reads: list[TagRead] = []
    lost: dict[str, list[str]] = {}
    for i, item in enumerate(items):
        why = _read_problem(item, ports)
        if why is None:
            try:
                tag = decode_sgtin96(item["epc"])
            except EpcError as exc:
                why = exc.reason, str(exc)
            else:
                reads.append(TagRead(float(item["t"]), int(item["antenna"]), tag, float(item["rssi"])))
                continue
        lost.setdefault(why[0], []).append(f"read {i}: {why[1]}")
    problems = tuple(ReadProblem(reason, f"{where} seq {seq}: {len(msgs)} read(s) rejected ({reason}); "
                                         f"first: {msgs[0]}"[:300], len(msgs)) for reason, msgs in lost.items())
    reads.sort(key=lambda r: r.t)
    return ReadsMessage(seq, tuple(reads), problems)


def _read_problem(item: Any, ports: set[int]) -> tuple[str, str] | None:
    if not isinstance(item, Mapping):
        return "bad_field", "not an object"
    t, antenna, rssi = item.get("t"), item.get("antenna"), item.get("rssi")
    if not (isinstance(t, (int, float)) and not isinstance(t, bool) and math.isfinite(t) and T_MIN <= t <= T_MAX):
        return "bad_field", f"time {str(t)[:30]} is not seconds since epoch UTC"
    if not (isinstance(rssi, (int, float)) and not isinstance(rssi, bool) and math.isfinite(rssi)
            and -120.0 <= rssi <= 0.0):
        return "bad_field", f"RSSI {str(rssi)[:30]} is not -120 … 0 dBm"
    if not (isinstance(antenna, int) and not isinstance(antenna, bool)) or antenna not in ports:
        return "unknown_antenna", f"antenna {str(antenna)[:20]} is not registered for this reader"
    return None


# ------------------------------------------------------------------------------------------------- shelf antennas
@dataclass(frozen=True)
class TagEvent:
    """A tag event for fusion: ``kind`` ``take`` (a tag stopped being read on its shelf antenna: ``t`` its last
    read), ``return`` (read again on a shelf after a take: ``t`` the first read back), or ``exit`` (read at an
    exit-lane antenna: ``t`` the read). ``where`` is the bin code (shelf) or lane name (exit); ``rssi_dbm`` the
    strongest read; ``reads`` how many reads it sums; ``on_shelf``: an exit read of a tag that a shelf antenna
    read within :attr:`ShelfTagConfig.guard_s` (a stray read of a tag still on its shelf: not leaving)."""

    kind: str
    t: float
    epc: str
    gtin: str
    serial: str
    where: str
    rssi_dbm: float
    reads: int = 1
    on_shelf: bool = False

    def as_dict(self) -> dict:
        return {"kind": self.kind, "t": round(self.t, 3), "epc": self.epc, "gtin": self.gtin, "serial": self.serial,
                "where": self.where, "rssi": round(self.rssi_dbm, 1), "reads": self.reads, "on_shelf": self.on_shelf}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TagEvent":
        """Raises ``KeyError``/``ValueError``/``TypeError`` on a malformed dict."""
        kind = str(d["kind"])
        if kind not in ("take", "return", "exit"):
            raise ValueError(f"tag event kind {kind!r} is not take, return or exit")
        t = float(d["t"])
        if not math.isfinite(t):
            raise ValueError("non-finite tag event time")
        return cls(kind=kind, t=t, epc=str(d["epc"]), gtin=str(d["gtin"]), serial=str(d["serial"]),
                   where=str(d["where"]), rssi_dbm=float(d["rssi"]), reads=int(d.get("reads", 1)),
                   on_shelf=bool(d.get("on_shelf", False)))


@dataclass(frozen=True)
class ShelfTagConfig:
    """Knobs of :class:`ShelfTagTracker` (seconds).

    ``absent_s``: a tag on a shelf antenna not read for this long is gone (a take at its last read). Shelf
    antennas inventory their tags about once a second; with a 10 % per-cycle miss rate (dense shelves: see
    ``carts.offline.rfid_simulation.RfidSimConfig``) three missed cycles in a row happen once in 1,000
    tag-seconds, so 3 s keeps false takes rare and still tells a take within seconds. ``guard_s``: an exit-lane
    read of a tag read on a shelf antenna this recently is a stray read (``TagEvent.on_shelf``)."""

    absent_s: float = 3.0
    guard_s: float = 2.0

    def __post_init__(self) -> None:
        check_numbers(self, ("absent_s",), low=0, low_open=True)
        check_numbers(self, ("guard_s",), low=0)


class ShelfTagTracker:
    """Which tags each shelf antenna reads, and the takes and returns that follow from read gaps.

    ``shelf_of``: antenna port → bin code for the shelf antennas; ``lane_of``: port → lane name for the exit-lane
    antennas (their reads become ``exit`` events). Feed :meth:`push` in time order per reader, then
    :meth:`advance` with the reader's time; both return the :class:`TagEvent` s that came out of it. A tag first
    read on a shelf is stocked (no event); one gone for ``absent_s`` is a take; one read on a shelf after its take
    is a return (on whichever shelf: a misplaced put-back names the other bin). Not thread-safe."""

    def __init__(self, *, shelf_of: Mapping[int, str], lane_of: Mapping[int, str],
                 config: ShelfTagConfig = ShelfTagConfig()) -> None:
        self.shelf_of = dict(shelf_of)
        self.lane_of = dict(lane_of)
        self.config = config
        self.on_shelf: dict[str, list] = {}   # epc → [bin, last t, rssi, Sgtin]
        self.taken: dict[str, float] = {}      # epc → take time (kept until read again or forgotten)
        self.now = -math.inf

    def push(self, reads: Sequence[TagRead]) -> list[TagEvent]:
        out: list[TagEvent] = []
        for r in reads:
            self.now = max(self.now, r.t)
            tag = r.tag
            if r.antenna in self.lane_of:
                shelf = self.on_shelf.get(tag.epc)
                stray = shelf is not None and r.t - shelf[1] <= self.config.guard_s
                out.append(TagEvent("exit", r.t, tag.epc, tag.gtin, tag.serial, self.lane_of[r.antenna], r.rssi_dbm,
                                    1, stray))
                continue
            bin_code = self.shelf_of.get(r.antenna)
            if bin_code is None:
                continue
            if tag.epc in self.taken:
                del self.taken[tag.epc]
                out.append(TagEvent("return", r.t, tag.epc, tag.gtin, tag.serial, bin_code, r.rssi_dbm))
            self.on_shelf[tag.epc] = [bin_code, r.t, r.rssi_dbm, tag]
        out += self.advance(self.now)
        return out

    def advance(self, now: float) -> list[TagEvent]:
        """Takes of the tags not read for ``absent_s`` before ``now`` (s, reader clock); forgets takes older than
        an hour (the tag left the store or was never put back)."""
        self.now = max(self.now, now)
        out = []
        for epc, (bin_code, t_last, rssi, tag) in list(self.on_shelf.items()):
            if self.now - t_last >= self.config.absent_s:
                del self.on_shelf[epc]
                self.taken[epc] = t_last
                out.append(TagEvent("take", t_last, epc, tag.gtin, tag.serial, bin_code, rssi))
        for epc in [e for e, t in self.taken.items() if self.now - t > 3600.0]:
            del self.taken[epc]
        return out


# ------------------------------------------------------------------------------------------------- exit lanes
@dataclass(frozen=True)
class ExitLaneConfig:
    """How exit-lane reads become a shopper's tags (seconds, dBm).

    A read belongs to the exit nearest in time within ``[t_exit − before_s, t_exit + after_s]`` (a portal reads a
    walking shopper's tags for about a second around the exit line). A tag counts when it was read ``min_reads``
    times in that window or once at ``strong_rssi_dbm`` or stronger: a stray read of a tag nearby (a shelf by the
    door, a passer-by) is weak and single. Two exits of different parties within ``tie_s`` of each other cannot
    be told apart by time: their shared tags are reported, not charged. ``after_s`` must not exceed the loop's
    exit settle time (billing waits that long)."""

    before_s: float = 2.0
    after_s: float = 1.5
    min_reads: int = 2
    strong_rssi_dbm: float = -55.0
    tie_s: float = 0.5

    def __post_init__(self) -> None:
        check_numbers(self, ("before_s", "after_s", "tie_s"), low=0)
        check_numbers(self, ("min_reads",), low=1, integer=True)
        check_numbers(self, ("strong_rssi_dbm",))


@dataclass(frozen=True)
class ExitTag:
    """A tag that left with a shopper: identity, ``reads`` in the window, strongest ``rssi_dbm``, first ``t``,
    the ``lane``."""

    epc: str
    gtin: str
    serial: str
    t: float
    reads: int
    rssi_dbm: float
    lane: str

    def as_dict(self) -> dict:
        return {"epc": self.epc, "gtin": self.gtin, "serial": self.serial, "t": round(self.t, 3),
                "reads": self.reads, "rssi": round(self.rssi_dbm, 1), "lane": self.lane}


@dataclass
class ExitAttribution:
    """:func:`exit_lane_tags`' answer: ``tags`` of the track, ``ambiguous`` tags another party's exit shares (not
    charged), ``weak`` tags read too weakly or too few times, ``stray`` tags a shelf antenna read meanwhile (still
    on their shelf)."""

    tags: list[ExitTag] = field(default_factory=list)
    ambiguous: list[ExitTag] = field(default_factory=list)
    weak: int = 0
    stray: int = 0


def _sorted(reads: Sequence[TagEvent]) -> bool:
    """True when ``reads`` is a non-empty list in time order (checked at its ends and middle: callers keep it
    sorted; a caller that does not gets a full scan)."""
    n = len(reads)
    return n > 0 and isinstance(reads, list) and reads[0].t <= reads[n // 2].t <= reads[-1].t


def exit_lane_tags(track: str, reads: Sequence[TagEvent], exits: Mapping[str, float],
                   party_of: Mapping[str, str] | None = None,
                   config: ExitLaneConfig = ExitLaneConfig()) -> ExitAttribution:
    """The tags that left with ``track``'s shopper: ``reads`` are exit-lane :class:`TagEvent` s, ``exits`` every
    exit time by track (``track`` included), ``party_of`` track → party lead (a party's exits are one). ``reads``
    should be a list in time order (the store loop keeps it so; then only the window is scanned). Raises
    ``KeyError`` when ``track`` has no exit."""
    party_of = party_of or {}
    t_exit = exits[track]
    lead = party_of.get(track, track)
    lo, hi = t_exit - config.before_s, t_exit + config.after_s
    span = config.before_s + config.after_s
    near_exits = [(tr, t) for tr, t in exits.items() if abs(t - t_exit) <= span]   # the only ones that compete
    rivals = [tr for tr, t in near_exits if party_of.get(tr, tr) != lead and abs(t - t_exit) <= config.tie_s]
    by_epc: dict[str, list[TagEvent]] = {}
    out = ExitAttribution()
    start = bisect.bisect_left(reads, lo, key=lambda r: r.t) if _sorted(reads) else 0
    for r in reads[start:]:
        if r.t > hi and start:
            break
        if r.kind != "exit" or not lo <= r.t <= hi:
            continue
        by_epc.setdefault(r.epc, []).append(r)
    for epc, rs in by_epc.items():
        if any(r.on_shelf for r in rs):   # a shelf antenna read it meanwhile: it is on its shelf, not leaving
            out.stray += 1
            continue
        # a tag passes with one shopper: it belongs to the exit nearest the middle of its reads
        times = sorted(r.t for r in rs)
        mid = times[len(times) // 2]
        nearest = min((abs(mid - t), tr) for tr, t in near_exits
                      if t - config.before_s <= mid <= t + config.after_s)
        if party_of.get(nearest[1], nearest[1]) != lead and abs(mid - t_exit) > nearest[0] + 1e-9 \
                and abs(exits[nearest[1]] - t_exit) > config.tie_s:
            continue   # another shopper's (one leaving together with this one: ambiguous, below)
        n = sum(r.reads for r in rs)
        rssi = max(r.rssi_dbm for r in rs)
        if n < config.min_reads and rssi < config.strong_rssi_dbm:
            out.weak += 1
            continue
        tag = ExitTag(epc, rs[0].gtin, rs[0].serial, times[0], n, rssi, rs[0].where)
        (out.ambiguous if rivals else out.tags).append(tag)
    out.tags.sort(key=lambda x: x.t)
    return out


@dataclass(frozen=True)
class TagCharge:
    """What billing does with one exit tag: ``action`` ``charge`` (+1 of ``barcode`` to the cart: nothing else saw
    it), ``confirm`` (the cart holds that product by weight already: the tag confirms a unit, no new charge),
    ``paid`` (this serial was sold on an earlier receipt: never charged twice), ``unknown`` (no catalogue product
    has its GTIN)."""

    tag: ExitTag
    action: str
    barcode: str | None


def exit_charges(tags: Sequence[ExitTag], *, cart: Mapping[str, int], sold: Iterable[tuple[str, str]],
                 barcode_of: Mapping[str, str], confirmed: Mapping[str, int] | None = None) -> list[TagCharge]:
    """Billing rules for a visit's exit tags. ``cart``: barcode → units in the visit's cart from other senses
    (weight); ``sold``: (GTIN-14, serial) of tags charged or confirmed on any receipt (this visit's earlier
    confirmations included); ``barcode_of``: GTIN-14 → catalogue barcode; ``confirmed``: barcode → units of the
    cart already confirmed by tags of this visit. Each product's cart units are confirmed by at most as many tags;
    tags beyond them are charged. A tag seen twice in ``tags`` counts once."""
    sold = set(sold)
    used = dict(confirmed or {})
    out: list[TagCharge] = []
    seen: set[tuple[str, str]] = set()
    for tag in tags:
        key = (tag.gtin, tag.serial)
        if key in seen:
            continue
        seen.add(key)
        barcode = barcode_of.get(tag.gtin)
        if key in sold:
            out.append(TagCharge(tag, "paid", barcode))
        elif barcode is None:
            out.append(TagCharge(tag, "unknown", None))
        elif used.get(barcode, 0) < cart.get(barcode, 0):
            used[barcode] = used.get(barcode, 0) + 1
            out.append(TagCharge(tag, "confirm", barcode))
        else:
            out.append(TagCharge(tag, "charge", barcode))
    return out
