"""Readers for the AiFi AutoCheckout (CPS-IoT Week 2020) weight-plate exports (pure Python + NumPy, no Django).

The store streams one MongoDB document per gondola per message; ``read_plate_file`` reads the JSON-lines export
of that collection (``BENCHMARK-1/plate_data.json``). Document layout, from the data set's own README
(``store_meta/README_source.md``) and the files themselves::

    document.header.t_origin            ISO-8601 UTC time of the message
    document.plate_data.plate_id.shelf_id.gondola_id.id    gondola number (1-based)
    document.plate_data.freq_samp       sample rate, Hz (60 in this store)
    document.plate_data.values.type     "DATATYPE_FLOAT32"
    document.plate_data.values.shape    [samples, shelves + 1, plates + 1]
    document.plate_data.values.data     base64 of little-endian float32 grams, C order [sample, shelf, plate]

Row 0 and column 0 of every sample are NaN padding (shelves and plates are numbered from 1). Readings are raw
(not zeroed) grams: only changes are meaningful.

Time convention (ours; the source does not say which sample ``t_origin`` stamps): ``t_origin`` is the time of
the FIRST sample of the block and sample ``i`` is at ``t_origin + i / freq_samp``. On BENCHMARK-1 consecutive
messages of a gondola are exactly ``12 / 60 = 0.2 s`` apart, so this tiles time without gaps or overlaps.

Also here: ``read_products`` (``products.json`` → :class:`sensors.weight.ProductWeights`) and ``read_planogram``
(``planogram.json`` → :class:`sensors.weight.Planogram`), the adapters the tests and the importer need.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from carts.offline.autocheckout_store import AutoCheckoutError
from sensors.weight import Planogram, ProductWeights

log = logging.getLogger(__name__)

#: The only sample type this store sends (``document.plate_data.values.type``).
FLOAT32_TYPE = "DATATYPE_FLOAT32"

#: Default relative spread of a product's unit weight when the catalogue gives only a mean: 3 %, about the 75th
#: percentile of the relative standard deviation of the repeated real weighings of 78 products in AIM3S
#: ``Dataset/product_info.json`` (CarlosRDomin/AIM3S; median 1.3 %, 75th pct 2.9 %, 90th pct 4.9 %).
DEFAULT_PRODUCT_SD_REL = 0.03
#: Floor of that spread, grams: the median absolute sd of the same weighings is 1.6 g.
DEFAULT_PRODUCT_SD_FLOOR_G = 2.0


class PlateMessageError(AutoCheckoutError):
    """A plate-data message that cannot be decoded; the message names the file, the line and the field."""


# --------------------------------------------------------------------------------------------- typed containers
@dataclass(frozen=True)
class PlateBlock:
    """Samples of every plate of one gondola over one time span.

    ``gondola`` int (1-based); ``t`` (n,) float64 seconds since epoch UTC, strictly increasing; ``grams`` (n, S, P)
    float32 raw plate readings in grams with the NaN padding removed, so ``grams[:, s - 1, p - 1]`` is shelf ``s``
    plate ``p`` (NaN where the controller sent NaN, e.g. a plate that is not fitted). ``rate_hz`` float, the
    nominal sample rate.

    Raises ``ValueError`` (expected vs actual shape) on inconsistent arrays.
    """

    gondola: int
    t: np.ndarray
    grams: np.ndarray
    rate_hz: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.t, np.ndarray) or self.t.ndim != 1 or self.t.dtype != np.float64:
            raise ValueError(f"PlateBlock.t must be a (n,) float64 array, got "
                             f"{getattr(self.t, 'shape', None)} {getattr(self.t, 'dtype', type(self.t))}")
        n = self.t.shape[0]
        if not isinstance(self.grams, np.ndarray) or self.grams.ndim != 3 or self.grams.shape[0] != n:
            raise ValueError(f"PlateBlock.grams must be (n, S, P) with n = {n}, got "
                             f"{getattr(self.grams, 'shape', None)}")
        if self.grams.dtype != np.float32:
            raise ValueError(f"PlateBlock.grams must be float32, got {self.grams.dtype}")
        if not np.all(np.isfinite(self.t)):
            raise ValueError("PlateBlock.t must be finite")
        if n > 1 and not np.all(np.diff(self.t) > 0):
            raise ValueError("PlateBlock.t must be strictly increasing")
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"PlateBlock.rate_hz must be > 0, got {self.rate_hz}")

    def __len__(self) -> int:
        return int(self.t.shape[0])

    @property
    def n_shelves(self) -> int:
        """Number of shelves S."""
        return int(self.grams.shape[1])

    @property
    def n_plates(self) -> int:
        """Number of plates per shelf P (the widest shelf; missing plates read NaN or a constant)."""
        return int(self.grams.shape[2])

    @property
    def bin_codes(self) -> tuple[str, ...]:
        """(S·P,) bin codes ``"<gondola>-<shelf>-<plate>"`` in the column order of :meth:`flat_grams`."""
        return tuple(f"{self.gondola}-{s}-{p}" for s in range(1, self.n_shelves + 1)
                     for p in range(1, self.n_plates + 1))

    def flat_grams(self) -> np.ndarray:
        """(n, S·P) float64 grams, column ``(s - 1)·P + (p - 1)`` = shelf ``s`` plate ``p`` (see :attr:`bin_codes`)."""
        return self.grams.reshape(self.grams.shape[0], -1).astype(np.float64)

    @classmethod
    def concat(cls, blocks: Sequence["PlateBlock"]) -> "PlateBlock":
        """Join blocks of ONE gondola into one, in time order.

        Blocks are sorted by their first sample time; an exact duplicate (same first time and same shape) is
        dropped with a log line. Raises ``ValueError`` for an empty list, mixed gondolas or shapes, or blocks that
        overlap in time.
        """
        if not blocks:
            raise ValueError("PlateBlock.concat needs at least one block")
        gondolas = {b.gondola for b in blocks}
        if len(gondolas) != 1:
            raise ValueError(f"PlateBlock.concat: blocks of several gondolas {sorted(gondolas)}")
        shapes = {b.grams.shape[1:] for b in blocks}
        if len(shapes) != 1:
            raise ValueError(f"PlateBlock.concat: gondola {blocks[0].gondola} blocks have shelf×plate shapes "
                             f"{sorted(shapes)}; expected one")
        ordered = sorted(blocks, key=lambda b: float(b.t[0]) if len(b) else math.inf)
        kept: list[PlateBlock] = []
        for b in ordered:
            if not len(b):
                continue
            if kept and b.t[0] == kept[-1].t[0] and len(b) == len(kept[-1]):
                log.warning("gondola %d: duplicate block at t=%.3f dropped", b.gondola, b.t[0])
                continue
            if kept and b.t[0] <= kept[-1].t[-1]:
                raise ValueError(f"gondola {b.gondola}: block at t={b.t[0]:.3f} overlaps the previous block "
                                 f"(ends t={kept[-1].t[-1]:.3f})")
            kept.append(b)
        if not kept:
            return cls(blocks[0].gondola, np.zeros(0), np.zeros((0,) + blocks[0].grams.shape[1:], np.float32),
                       blocks[0].rate_hz)
        return cls(kept[0].gondola, np.concatenate([b.t for b in kept]),
                   np.concatenate([b.grams for b in kept]), kept[0].rate_hz)


# --------------------------------------------------------------------------------------------- decoding
def _get(doc: Any, path: str, where: str) -> Any:
    """``doc[a][b]...`` for ``path = "a.b..."``; raises PlateMessageError naming the first missing field."""
    cur = doc
    done: list[str] = []
    for key in path.split("."):
        done.append(key)
        if not isinstance(cur, Mapping) or key not in cur:
            raise _err(f"missing field {'.'.join(done)}", where, ".".join(done))
        cur = cur[key]
    return cur


def _err(message: str, where: str, field: str = "") -> PlateMessageError:
    path, line = _split_where(where)
    return PlateMessageError(message, path=path, line=line, field=field)


def _split_where(where: str) -> tuple[str, int]:
    m = re.fullmatch(r"(.*):(\d+)", where or "")
    if m:
        return m.group(1), int(m.group(2))
    return where or "", 0


def parse_utc(text: Any, *, where: str = "", field: str = "") -> float:
    """ISO-8601 time (``...Z`` or with an offset; naive = UTC) → float seconds since epoch UTC.

    Raises PlateMessageError (naming ``where`` and ``field``) for a non-string, an unparsable or non-finite time.
    """
    if not isinstance(text, str):
        raise _err(f"time must be an ISO-8601 string, got {type(text).__name__}", where, field)
    s = text.strip()
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError as exc:
        raise _err(f"bad ISO-8601 time {text!r}: {exc}", where, field) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    value = dt.timestamp()
    if not math.isfinite(value):
        raise _err(f"non-finite time {text!r}", where, field)
    return value


def decode_plate_document(doc: dict, *, where: str = "") -> PlateBlock:
    """Decode one plate-data document (one gondola, one message) into a :class:`PlateBlock`.

    ``doc`` is the parsed JSON document; ``where`` (``"file:line"``) is put in error messages. Returns a block
    with ``t`` (n,) float64 s UTC (sample ``i`` at ``t_origin + i / freq_samp``, ``t_origin`` being taken as the
    time of the FIRST sample) and ``grams`` (n, shelves, plates) float32 with row/column 0 padding removed.

    Raises :class:`PlateMessageError` for: a missing field, a gondola id that is not a positive integer, a sample
    rate that is not a positive finite number, a ``type`` other than ``DATATYPE_FLOAT32``, a shape that is not
    three positive integers with ≥ 2 shelf and plate rows, bad base64, a byte count that does not match the
    shape, or a non-finite / unparsable ``t_origin``. Source of the layout: ``store_meta/README_source.md``.
    """
    if not isinstance(doc, Mapping):
        raise _err(f"document must be a JSON object, got {type(doc).__name__}", where)
    gondola = _get(doc, "document.plate_data.plate_id.shelf_id.gondola_id.id", where)
    if isinstance(gondola, bool) or not isinstance(gondola, int) or gondola < 1:
        raise _err(f"gondola id must be a positive integer, got {gondola!r}", where,
                   "document.plate_data.plate_id.shelf_id.gondola_id.id")
    freq = _get(doc, "document.plate_data.freq_samp", where)
    if isinstance(freq, bool) or not isinstance(freq, (int, float)) or not math.isfinite(freq) or freq <= 0:
        raise _err(f"freq_samp must be a positive number, got {freq!r}", where, "document.plate_data.freq_samp")
    dtype = _get(doc, "document.plate_data.values.type", where)
    if dtype != FLOAT32_TYPE:
        raise _err(f"values.type must be {FLOAT32_TYPE}, got {dtype!r}", where, "document.plate_data.values.type")
    shape = _get(doc, "document.plate_data.values.shape", where)
    if (not isinstance(shape, list) or len(shape) != 3
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in shape)
            or shape[0] < 1 or shape[1] < 2 or shape[2] < 2):
        raise _err(f"values.shape must be [samples ≥ 1, shelves + 1 ≥ 2, plates + 1 ≥ 2], got {shape!r}",
                   where, "document.plate_data.values.shape")
    data = _get(doc, "document.plate_data.values.data", where)
    if not isinstance(data, str):
        raise _err(f"values.data must be a base64 string, got {type(data).__name__}", where,
                   "document.plate_data.values.data")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _err(f"bad base64 in values.data: {exc}", where, "document.plate_data.values.data") from None
    expected = 4 * shape[0] * shape[1] * shape[2]
    if len(raw) != expected:
        raise _err(f"values.data holds {len(raw)} bytes; shape {shape} of float32 needs {expected}", where,
                   "document.plate_data.values.data")
    t0 = parse_utc(_get(doc, "document.header.t_origin", where), where=where, field="document.header.t_origin")
    arr = np.frombuffer(raw, dtype="<f4").reshape(shape)
    grams = np.ascontiguousarray(arr[:, 1:, 1:], dtype=np.float32)
    t = t0 + np.arange(shape[0], dtype=np.float64) / float(freq)
    return PlateBlock(gondola=gondola, t=t, grams=grams, rate_hz=float(freq))


def _json_lines(path: Path) -> Iterator[tuple[int, Any]]:
    """``(line number, document)`` for each non-blank line of the JSON-lines file ``path`` (UTF-8), line numbers
    from 1; a line that is not valid JSON gives its ``json.JSONDecodeError`` in place of the document, for the
    caller to report in its own terms. Raises ``OSError`` (on first iteration) if the file cannot be opened."""
    with path.open("r", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                doc = json.loads(line)
            except json.JSONDecodeError as exc:
                doc = exc
            yield lineno, doc


def read_plate_file(path: str | Path) -> tuple[list[PlateBlock], list[PlateMessageError]]:
    """Read a JSON-lines export of plate-data documents (one document a line).

    Returns ``(blocks, errors)``: every line that decodes gives a block, in file order; a line that is not JSON
    or not a valid message gives a :class:`PlateMessageError` naming ``path:line`` (logged at WARNING) and is
    skipped; blank lines are ignored. Raises ``OSError`` if the file cannot be opened.
    """
    path = Path(path)
    blocks: list[PlateBlock] = []
    errors: list[PlateMessageError] = []
    for lineno, doc in _json_lines(path):
        if isinstance(doc, json.JSONDecodeError):
            err = PlateMessageError(f"bad JSON: {doc.msg} at column {doc.colno}", path=str(path), line=lineno)
            log.warning("%s", err)
            errors.append(err)
            continue
        try:
            blocks.append(decode_plate_document(doc, where=f"{path}:{lineno}"))
        except PlateMessageError as err:
            log.warning("%s", err)
            errors.append(err)
    return blocks, errors


def blocks_by_gondola(blocks: Iterable[PlateBlock]) -> dict[int, PlateBlock]:
    """Group decoded blocks by gondola and join each group in time order (see :meth:`PlateBlock.concat`).

    Returns ``{gondola: PlateBlock}`` sorted by gondola. Raises ``ValueError`` as ``concat`` does.
    """
    groups: dict[int, list[PlateBlock]] = {}
    for b in blocks:
        groups.setdefault(b.gondola, []).append(b)
    return {g: PlateBlock.concat(groups[g]) for g in sorted(groups)}


# --------------------------------------------------------------------------------------------- catalogue
def read_products(path: str | Path, *, sd_rel: float = DEFAULT_PRODUCT_SD_REL,
                  sd_floor_g: float = DEFAULT_PRODUCT_SD_FLOOR_G,
                  ) -> tuple[ProductWeights, list[AutoCheckoutError]]:
    """Read ``products.json`` (JSON lines: ``product_id.id`` barcode, ``metadata.weight`` grams).

    The catalogue gives one weight per product and no spread, so ``sd_g = max(sd_floor_g, sd_rel · mean_g)``
    (defaults from the AIM3S weighings, see :data:`DEFAULT_PRODUCT_SD_REL`). A barcode listed twice keeps its
    first entry (a differing second weight is logged); a line without a barcode or a positive finite weight is
    an :class:`AutoCheckoutError` (logged, skipped). Returns ``(products, errors)``; raises ``OSError`` if the
    file cannot be opened.
    """
    path = Path(path)
    barcodes: list[str] = []
    means: list[float] = []
    seen: dict[str, float] = {}
    errors: list[AutoCheckoutError] = []
    for lineno, doc in _json_lines(path):
        if isinstance(doc, json.JSONDecodeError):
            err = AutoCheckoutError(f"bad JSON: {doc.msg}", path=str(path), line=lineno)
        else:
            pid = doc.get("product_id") if isinstance(doc, dict) else None
            meta = doc.get("metadata") if isinstance(doc, dict) else None
            code = pid.get("id") if isinstance(pid, dict) else None
            weight = meta.get("weight") if isinstance(meta, dict) else None
            if not isinstance(code, str) or not code:
                err = AutoCheckoutError(f"barcode must be a non-empty string, got {code!r}",
                                        path=str(path), line=lineno, field="product_id.id")
            elif (isinstance(weight, bool) or not isinstance(weight, (int, float))
                  or not math.isfinite(weight) or weight <= 0):
                err = AutoCheckoutError(f"weight must be a positive number of grams, got {weight!r}",
                                        path=str(path), line=lineno, field="metadata.weight")
            elif code in seen:
                if abs(seen[code] - float(weight)) > 1e-6:
                    log.warning("%s:%d: product %s listed again with weight %.2f g (kept %.2f g)",
                                path, lineno, code, weight, seen[code])
                continue
            else:
                seen[code] = float(weight)
                barcodes.append(code)
                means.append(float(weight))
                continue
        log.warning("%s", err)
        errors.append(err)
    mean = np.asarray(means, dtype=np.float64)
    sd = np.maximum(sd_floor_g, sd_rel * mean)
    return ProductWeights(np.asarray(barcodes, dtype=object), mean, sd), errors


def read_planogram(path: str | Path, products: ProductWeights, bin_codes: Sequence[str],
                   ) -> tuple[Planogram, list[AutoCheckoutError]]:
    """Read ``planogram.json`` (JSON lines: ``planogram_product_id.id`` barcode, ``plate_ids`` [{shelf_id:
    {gondola_id: {id}, shelf_index}, plate_index}]) into a :class:`Planogram` over ``bin_codes``.

    ``bin_codes`` (B,) are the detector's columns (``"<gondola>-<shelf>-<plate>"``). Facings on bins not in
    ``bin_codes`` or of barcodes not in ``products`` are logged and left out; an entry with no product id (the
    export has one) or malformed plate ids is an :class:`AutoCheckoutError` (logged, skipped). Neighbours are the
    plates ``p ± 1`` of the same gondola and shelf that are in ``bin_codes``. Returns ``(planogram, errors)``.
    """
    path = Path(path)
    codes = tuple(bin_codes)
    known = set(codes)
    catalogue = {str(b) for b in products.barcode}
    facings: dict[str, list[str]] = {}
    errors: list[AutoCheckoutError] = []
    for lineno, doc in _json_lines(path):
        err: AutoCheckoutError | None = None
        if isinstance(doc, json.JSONDecodeError):
            err = AutoCheckoutError(f"bad JSON: {doc.msg}", path=str(path), line=lineno)
        else:
            pid = doc.get("planogram_product_id") if isinstance(doc, dict) else None
            code = pid.get("id") if isinstance(pid, dict) else None
            if not isinstance(code, str) or not code:
                err = AutoCheckoutError(f"no product id (got {code!r})", path=str(path), line=lineno,
                                        field="planogram_product_id.id")
            else:
                try:
                    plates = [(int(p["shelf_id"]["gondola_id"]["id"]), int(p["shelf_id"]["shelf_index"]),
                               int(p["plate_index"])) for p in doc["plate_ids"]]
                except (KeyError, TypeError, ValueError) as exc:
                    err = AutoCheckoutError(f"malformed plate id ({exc!r})", path=str(path), line=lineno,
                                            field="plate_ids")
        if err is not None:
            log.warning("%s", err)
            errors.append(err)
            continue
        if code not in catalogue:
            log.warning("%s:%d: product %s is not in the catalogue (no weight); facing left out",
                        path, lineno, code)
            continue
        missing = []
        for g, s, p in plates:
            bin_code = f"{g}-{s}-{p}"
            if bin_code not in known:
                missing.append(bin_code)
                continue
            lst = facings.setdefault(bin_code, [])
            if code not in lst:
                lst.append(code)
        if missing:
            log.warning("%s:%d: bins %s are not among the detector's bins; facings of %s there left out",
                        path, lineno, ",".join(missing), code)
    neighbours: dict[str, tuple[str, ...]] = {}
    for c in codes:
        parts = c.split("-")
        if len(parts) != 3 or not all(x.isdigit() for x in parts):
            neighbours[c] = ()
            continue
        g, s, p = (int(x) for x in parts)
        neighbours[c] = tuple(n for n in (f"{g}-{s}-{p - 1}", f"{g}-{s}-{p + 1}") if n in known)
    planogram = Planogram(bin_codes=codes, facings={k: tuple(v) for k, v in facings.items()},
                          products=products, neighbours=neighbours)
    return planogram, errors
