"""The review console's content: one review item told as a store manager reads it, not as fusion logged it.

:func:`review_console` builds, for one :class:`~carts.models.ReviewItem`, the plain sentences ("Shopper A's hand was
at this plate when 509 g left it; that is one ICE Ginger Lime"), the candidates named by visit and account (letters
A, B… in the order fusion ranked them, never track numbers), the answers ranked by probability (the likely ones
first; those under ``settings.WALKOUT["REVIEW_OTHER_P"]`` folded under "other"), each with the money it moves and
the customer it names, the plate's **weight trace** and the **shelf plan** as server-side SVG (plain markup, no
charting library), and the **camera clips** the camera workers wrote (``vision.clips``).

Weight trace: the raw samples kept by ``sensors.storage`` for the plate's controller when they are still there
(``WALKOUT["RAW_RETENTION_H"]``); otherwise the event's own settled before/after, drawn as such and said so.
"""
from __future__ import annotations

import math
import textwrap
from dataclasses import dataclass, field
from html import escape

import numpy as np
from django.conf import settings

from sensors.models import ShelfController, ShelfEvent
from store.billing.services import price_to_minor
from store.gates.models import Visit
from store.inventory.models import Product
from store.layout.models import Bin

from .models import ReviewItem
from store.billing.money import money_display

from .selectors import OPEN_STATES
from vision.clips import CANDIDATE_HEX, clip_store
from store.layout.timezones import store_zone
from sensors.live import raw_store

_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def units_text(n: int, name: str) -> str:
    """``units_text(1, "Cola") == "one Cola"``, ``units_text(12, "Cola") == "12 × Cola"``."""
    n = abs(int(n))
    return f"{_WORDS[n]} {name}" if n < len(_WORDS) else f"{n} × {name}"


def letter(k: int) -> str:
    """Candidate ``k`` (0-based) → "A", "B", …, "Z", then "27", "28"…"""
    return chr(ord("A") + k) if k < 26 else str(k + 1)


def other_p() -> float:
    """Answers less likely than this (0–1) go under "other": ``settings.WALKOUT["REVIEW_OTHER_P"]`` (0.05)."""
    return float(settings.WALKOUT.get("REVIEW_OTHER_P", 0.05))


@dataclass(frozen=True)
class Person:
    """A candidate: ``letter`` ("A"), ``name`` ("Shopper A"), ``account`` (the shopper's e-mail/username, "" when
    no visit is bound), ``visit`` id or None, ``state`` of the visit, ``open`` (its cart takes events), ``billed``;
    ``distance_m`` closest hand distance to the plate (None unknown), ``share`` fusion's posterior for this
    shopper (0–1, None when not stored), ``hand_xyz`` metres (None unseen), ``colour`` hex (as in the clip)."""

    letter: str
    name: str
    account: str
    visit: int | None
    state: str
    open: bool
    billed: bool
    distance_m: float | None
    share: float | None
    hand_xyz: tuple | None
    colour: str
    track_id: str


@dataclass(frozen=True)
class Answer:
    """One decision to offer: ``person`` (None: nobody took it), ``barcode``/``name``/``quantity`` (signed units,
    + taken), ``p`` its probability (0–1), ``amount_minor``/``amount_display`` the money it moves on the customer's
    bill (+ charged, − taken off), ``label`` ("Shopper A took one Cola"), ``confirm`` (the confirmation sentence,
    naming the customer and the amount), ``fields`` the resolve form's fields, ``allowed`` False (with ``why``) when
    the visit cannot take it."""

    key: str
    person: Person | None
    barcode: str
    name: str
    quantity: int
    p: float
    amount_minor: int
    amount_display: str
    label: str
    confirm: str
    fields: dict
    allowed: bool = True
    why: str = ""


@dataclass(frozen=True)
class Console:
    """Everything the console page shows for one item (module docstring)."""

    item: ReviewItem
    event: ShelfEvent
    headline: str
    sentences: list[str]
    why: str
    people: list[Person]
    likely: list[Answer]
    other: list[Answer]
    threshold: float
    weight_svg: str
    weight_note: str
    plan_svg: str
    clips: list[dict] = field(default_factory=list)

    def answer(self, key: str) -> Answer | None:
        return next((a for a in self.likely + self.other if a.key == key), None)


def _g(grams: float) -> str:
    return f"{abs(grams):,.0f} g"


def _people(item: ReviewItem) -> list[Person]:
    cands = [c for c in item.candidates or [] if isinstance(c, dict)]
    visits = {v.pk: v for v in Visit.objects.filter(pk__in=[c.get("visit") for c in cands
                                                             if isinstance(c.get("visit"), int)])
              .select_related("shopper")}
    out = []
    for k, c in enumerate(cands):
        v = visits.get(c.get("visit"))
        share = c.get("posterior")
        d = c.get("distance_m")
        hand = c.get("hand_xyz")
        out.append(Person(
            letter=letter(k), name=f"Shopper {letter(k)}", account=v.shopper.get_username() if v else "",
            visit=v.pk if v else None, state=v.state if v else "", open=bool(v and v.state in OPEN_STATES),
            billed=bool(v and v.state in (Visit.State.BILLED,)),
            distance_m=float(d) if isinstance(d, (int, float)) and math.isfinite(d) else None,
            share=float(share) if isinstance(share, (int, float)) and math.isfinite(share) else None,
            hand_xyz=tuple(hand) if isinstance(hand, (list, tuple)) and len(hand) == 3 else None,
            colour=CANDIDATE_HEX[k % len(CANDIDATE_HEX)], track_id=str(c.get("track_id", ""))))
    return out


def _options(item: ReviewItem, event: ShelfEvent) -> list[dict]:
    """Product × quantity options, best first, each ``{"barcode", "quantity", "p"}`` (p sums to ≤ 1): fusion's
    posteriors stored with the candidates when there, else the event's hypothesis likelihoods, normalised."""
    stored = next((c.get("options") for c in item.candidates or [] if isinstance(c, dict) and c.get("options")), None)
    rows = []
    if stored:
        rows = [{"barcode": o.get("barcode"), "quantity": int(o.get("quantity") or 0),
                 "p": float(o.get("posterior") if o.get("posterior") is not None else o.get("likelihood") or 0)}
                for o in stored if isinstance(o, dict) and o.get("barcode")]
    if not rows:
        rows = [{"barcode": h.get("barcode"), "quantity": int(h.get("quantity") or 0),
                 "p": float(h.get("likelihood") or 0)}
                for h in event.hypotheses or [] if isinstance(h, dict) and h.get("barcode")]
    total = sum(r["p"] for r in rows)
    if total > 1.0:
        for r in rows:
            r["p"] /= total
    return sorted((r for r in rows if r["quantity"]), key=lambda r: -r["p"])


def _shares(people: list[Person]) -> list[float]:
    """Each candidate's share of the event (0–1): fusion's posterior where stored, else from the hand distance."""
    if people and all(p.share is not None for p in people):
        return [p.share for p in people]
    w = [1.0 / (0.05 + (p.distance_m if p.distance_m is not None else 1.0)) for p in people]
    s = sum(w) or 1.0
    return [x / s * 0.9 for x in w]  # 10 % left to "nobody" when fusion stored no posteriors


def _hand_phrase(p: Person, delta_g: float) -> str:
    moved = f"when {_g(delta_g)} {'left' if delta_g < 0 else 'was put on'} it"
    who = f"{p.name}{f' ({p.account})' if p.account else ' (no visit bound)'}"
    if p.distance_m is None:
        return f"{who} was near this plate {moved}, but their hand was not seen"
    if p.distance_m <= 0.05:
        return f"{who}'s hand was at this plate {moved}"
    return f"{who}'s hand came within {p.distance_m * 100:.0f} cm of this plate {moved}"


def review_console(item: ReviewItem, *, drawings: bool = True) -> Console:
    """The console of ``item`` (module docstring). Reads the database, the raw-sample files and the clip folder;
    ``drawings=False`` leaves out the trace, the plan and the clips (the dashboard's queue list)."""
    event = ShelfEvent.objects.select_related("bin__shelf__gondola", "store").get(pk=item.shelf_event_id)
    store = event.store
    people = _people(item)
    options = _options(item, event)
    products = {p.barcode: p for p in Product.objects.filter(store=store, barcode__in=[o["barcode"] for o in options])}
    name = {b: p.name for b, p in products.items()}
    shares = _shares(people)

    sentences = []
    best = options[0] if options else None
    what = (f"; that is {units_text(best['quantity'], name.get(best['barcode'], best['barcode']))}"
            f"{' put back' if best['quantity'] < 0 else ''}") if best else "; no product on this plate weighs that"
    if people:
        sentences.append(_hand_phrase(people[0], event.delta_g) + what + ".")
        for p in people[1:]:
            sentences.append(_hand_phrase(p, event.delta_g) + ".")
    else:
        sentences.append(f"{_g(event.delta_g)} {'left' if event.delta_g < 0 else 'was put on'} plate "
                         f"{event.bin.code}{what}, and no shopper's hand was seen near it.")
    if len(options) > 1:
        alt = options[1]
        sentences.append(f"It could also be {units_text(alt['quantity'], name.get(alt['barcode'], alt['barcode']))}"
                         f" ({alt['p'] * 100:.0f} % likely).")
    why = _why(item, people, shares, options)

    threshold = other_p()
    answers: list[Answer] = []
    currency = store.currency
    for p, share in zip(people, shares):
        for o in options:
            prod = products.get(o["barcode"])
            if prod is None:
                continue
            unit = price_to_minor(prod.price, currency)
            amount = unit * o["quantity"]
            what_ = units_text(o["quantity"], prod.name)
            label = f"{p.name} {'took' if o['quantity'] > 0 else 'put back'} {what_}"
            customer = p.account or "this shopper"
            if o["quantity"] > 0:
                confirm = (f"Charge {customer} {money_display(amount, currency)} for {what_}"
                           f"{' now, on the card of the billed visit' if p.billed else ''}?")
            else:
                confirm = (f"Take {what_} off {customer}'s bill ({money_display(-amount, currency)} less"
                           f"{', refunded to the card' if p.billed else ''})?")
            allowed, why_not = True, ""
            if p.visit is None:
                allowed, why_not = False, "no visit is bound to this shopper"
            elif not (p.open or p.billed):
                allowed, why_not = False, f"the visit is {p.state}: correct it from the visit's page"
            answers.append(Answer(key=f"{p.letter}:{o['barcode']}:{o['quantity']}", person=p, barcode=o["barcode"],
                                  name=prod.name, quantity=o["quantity"], p=share * o["p"], amount_minor=amount,
                                  amount_display=money_display(abs(amount), currency), label=label,
                                  confirm=confirm, fields={"visit": p.visit, "barcode": o["barcode"],
                                                           "quantity": o["quantity"]},
                                  allowed=allowed, why=why_not))
    nobody_p = max(0.0, 1.0 - sum(shares)) if people else 1.0
    answers.append(Answer(key="nobody", person=None, barcode="", name="", quantity=0, p=nobody_p, amount_minor=0,
                          amount_display=money_display(0, currency), label="Nobody took it",
                          confirm="Nobody took it: no one is charged for this. Dismiss it?", fields={}))
    answers.sort(key=lambda a: (-a.p, a.key))
    likely = [a for a in answers if a.p >= threshold]
    other = [a for a in answers if a.p < threshold]
    if not likely and answers:
        likely, other = answers[:1], answers[1:]

    weight_svg, weight_note = weight_trace_svg(event) if drawings else ("", "")

    return Console(
        item=item, event=event,
        headline=(f"{_g(event.delta_g)} {'left' if event.delta_g < 0 else 'came back to'} plate {event.bin.code}"
                  f" at {_local_time(event)}"),
        sentences=sentences, why=why, people=people, likely=likely, other=other, threshold=threshold,
        weight_svg=weight_svg, weight_note=weight_note, plan_svg=shelf_plan_svg(event, people) if drawings else "",
        clips=clip_store().clips(item.pk) if drawings else [])


def _local_time(event: ShelfEvent) -> str:
    return event.t_start.astimezone(store_zone(event.store)).strftime("%H:%M:%S")


def _why(item: ReviewItem, people: list[Person], shares: list[float], options: list[dict]) -> str:
    """Why a person is asked, in one sentence, from the evidence (the raw reason stays in the details)."""
    reason = (item.reason or "").lower()
    if "camera" in reason and "down" in reason:
        return "A camera that watches this shelf was not working, so nobody's hand could be checked."
    if "disturbance" in reason or len(item.shelf_event.bin_codes or []) > 2:
        return "Several plates moved at once: it may be two shoppers side by side."
    if not people:
        return "No shopper's hand was seen at the plate when the weight changed."
    if len(people) > 1 and shares[1] >= 0.5 * shares[0]:
        return f"{len(people)} shoppers were at the plate at that moment, and the cameras cannot tell which one."
    if options and options[0]["p"] < 0.6:
        return "The weight fits more than one product on this plate."
    if any(p.billed for p in people):
        return "The shopper had already paid and left: a decision adds a charge or a refund."
    return "The system was not sure enough to put this on anyone's bill by itself."


# --------------------------------------------------------------------------------------------------- weight trace
def _raw_trace(event: ShelfEvent, pad_s: float) -> tuple[np.ndarray, np.ndarray] | None:
    """The plate's raw samples around ``event`` (``t`` (n,) s relative to its start, ``grams`` (n,) relative to the
    first sample), or None when none are kept."""
    t0, t1 = event.t_start.timestamp() - pad_s, event.t_end.timestamp() + pad_s
    code = event.bin.code
    for ctl in ShelfController.objects.filter(store=event.store):
        if code not in (ctl.bin_codes or []):
            continue
        try:
            raw = raw_store().read(store=event.store.code, controller=ctl.name, t0=t0, t1=t1)
        except (OSError, ValueError):
            return None
        if len(raw.t) < 2 or code not in raw.bin_codes:
            return None
        cols = [raw.bin_codes.index(c) for c in (event.bin_codes or [code]) if c in raw.bin_codes]
        g = np.nansum(raw.grams[:, cols], axis=1)
        ok = np.isfinite(g)
        if ok.sum() < 2:
            return None
        t, g = raw.t[ok] - event.t_start.timestamp(), g[ok]
        return t, g - float(np.median(g[t < 0])) if (t < 0).any() else g - g[0]
    return None


def weight_trace_svg(event: ShelfEvent, *, width: int = 520, height: int = 180, pad_s: float = 3.0) -> tuple[str, str]:
    """The plate's weight over the event as an SVG line plot (grams against seconds from the event's start, the
    event shaded) and a note saying what the line is (kept raw samples, or the event's before/after)."""
    dur = max(0.05, (event.t_end - event.t_start).total_seconds())
    trace = _raw_trace(event, pad_s)
    if trace is not None:
        t, g = trace
        note = f"Measured: {len(t)} samples of the plate's load cell, kept by the shelf sensors."
    else:
        t = np.array([-pad_s, 0.0, dur, dur + pad_s])
        g = np.array([0.0, 0.0, event.delta_g, event.delta_g])
        note = ("No raw samples are kept for this moment (the shelf sensors keep them "
                f"{settings.WALKOUT.get('RAW_RETENTION_H', 48):g} h, live only): the line shows the event's settled "
                "weight before and after, not measured samples.")
    ml, mr, mt, mb = 56, 12, 12, 28
    x_lo, x_hi = float(min(t.min(), -pad_s)), float(max(t.max(), dur + pad_s))
    y_lo, y_hi = float(min(g.min(), 0.0, event.delta_g)), float(max(g.max(), 0.0, event.delta_g))
    span = max(y_hi - y_lo, 20.0)
    y_lo, y_hi = y_lo - 0.1 * span, y_hi + 0.1 * span

    def X(v):
        return ml + (v - x_lo) / (x_hi - x_lo) * (width - ml - mr)

    def Y(v):
        return mt + (y_hi - v) / (y_hi - y_lo) * (height - mt - mb)

    if len(t) > 1500:  # keep the markup small: every k-th sample
        k = int(math.ceil(len(t) / 1500))
        t, g = t[::k], g[::k]
    pts = " ".join(f"{X(a):.1f},{Y(b):.1f}" for a, b in zip(t, g))
    parts = [f'<svg class="trace" viewBox="0 0 {width} {height}" width="100%" role="img" '
             f'aria-label="weight of plate {escape(event.bin.code)} over time" xmlns="http://www.w3.org/2000/svg">',
             f'<rect x="{X(0):.1f}" y="{mt}" width="{max(1.0, X(dur) - X(0)):.1f}" height="{height - mt - mb}" '
             f'fill="#fff3cd"/>']
    step = _nice_step(y_hi - y_lo)
    v = math.ceil(y_lo / step) * step
    while v <= y_hi:
        parts.append(f'<line x1="{ml}" x2="{width - mr}" y1="{Y(v):.1f}" y2="{Y(v):.1f}" stroke="#e6ebe9"/>'
                     f'<text x="{ml - 6}" y="{Y(v) + 4:.1f}" font-size="11" text-anchor="end" fill="#555">'
                     f'{v:+.0f} g</text>')
        v += step
    for s in range(int(math.ceil(x_lo)), int(math.floor(x_hi)) + 1):
        parts.append(f'<text x="{X(s):.1f}" y="{height - 8}" font-size="11" text-anchor="middle" fill="#555">'
                     f'{s:+d} s</text>')
    dash = "" if trace is not None else ' stroke-dasharray="6 4"'
    parts.append(f'<polyline fill="none" stroke="#1f6f5c" stroke-width="2" points="{pts}"{dash}/>')
    parts.append(f'<text x="{X(dur) + 4:.1f}" y="{Y(event.delta_g) - 6:.1f}" font-size="12" fill="#1f6f5c" '
                 f'font-weight="600">{event.delta_g:+.0f} g</text></svg>')
    return "".join(parts), note


def _nice_step(span: float) -> float:
    raw = span / 4.0
    mag = 10 ** math.floor(math.log10(max(raw, 1e-9)))
    return next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)


# ------------------------------------------------------------------------------------------------------ shelf plan
PLAN_ROW_PX = 64  # one shelf's row in the plan, in SVG user units (px at 100 %): a 44 px plate, its label, a gap
PLAN_TOP_PX = 16  # room above the top shelf for a hand held higher than it (a hand is an 11 px radius dot)
PLAN_CAPTION = ("Gondola {n}, seen from the aisle; the yellow plate is where the weight changed; letters are the "
                "shoppers' hands.")


def shelf_plan_svg(event: ShelfEvent, people: list[Person], *, width: int = 520) -> str:
    """The gondola of the event's plate seen from the aisle: every bin of it as a box at its place along the
    gondola (x: metres along the gondola scaled to ``width`` px) on its shelf's row, the event's bins highlighted,
    and each candidate's hand (where seen) as a lettered dot in the candidate's colour.

    Sized from its content, not from the gondola's metres: one row of :data:`PLAN_ROW_PX` per shelf plus the
    caption's wrapped lines, so a one-shelf gondola is one row tall and the caption always lies inside the
    viewBox (``viewBox="0 0 width height"`` with the same ``height`` attribute). A hand's height is placed between
    the rows of the shelves it lies between (linear within a row; below the lowest shelf at its row's foot, above
    the top shelf's space at the top margin). Returns the SVG markup (str)."""
    gondola = event.bin.shelf.gondola
    bins = list(Bin.objects.filter(shelf__gondola=gondola).select_related("shelf"))
    c, s = math.cos(gondola.yaw_rad), math.sin(gondola.yaw_rad)

    def along(x: float, y: float) -> float:
        return (x - gondola.x) * c + (y - gondola.y) * s

    zs = sorted({b.shelf.z for b in bins}) or [event.bin.z]
    n = len(zs)
    gap = {z: (zs[i + 1] - z if i + 1 < n else max(0.3, gondola.height_m - z)) for i, z in enumerate(zs)}
    a_all = [along(b.x, b.y) for b in bins]
    lo = min([a - b.width_m / 2 for a, b in zip(a_all, bins)] + [0.0])
    hi = max([a + b.width_m / 2 for a, b in zip(a_all, bins)] + [gondola.width_m])
    hands = [(p, along(p.hand_xyz[0], p.hand_xyz[1]), p.hand_xyz[2]) for p in people if p.hand_xyz is not None]
    for _, a, _z in hands:
        lo, hi = min(lo, a - 0.1), max(hi, a + 0.1)
    scale = (width - 20) / max(hi - lo, 0.5)
    foot = {z: PLAN_TOP_PX + (n - i) * PLAN_ROW_PX for i, z in enumerate(zs)}  # y of each shelf's surface

    def X(a: float) -> float:
        return 10 + (a - lo) * scale

    def Y(z: float) -> float:
        if z <= zs[0]:
            return foot[zs[0]]
        row = max(r for r in zs if r <= z)
        frac = (z - row) / gap[row]
        return max(PLAN_TOP_PX - 8.0, foot[row] - min(frac, 1.0 + 8.0 / PLAN_ROW_PX) * PLAN_ROW_PX)

    caption = textwrap.wrap(PLAN_CAPTION.format(n=gondola.number), width=max(20, int((width - 20) / 6.2)))
    body_h = PLAN_TOP_PX + n * PLAN_ROW_PX + 14  # a hand at the lowest shelf stays clear of the caption
    height = body_h + 15 * len(caption) + 6
    marked = set(event.bin_codes or [event.bin.code])
    out = [f'<svg class="plan" viewBox="0 0 {width} {height}" width="100%" height="{height}" '
           f'preserveAspectRatio="xMinYMin meet" style="max-width:{width}px;height:auto" role="img" '
           f'xmlns="http://www.w3.org/2000/svg"'
           f' aria-label="gondola {gondola.number}: plate {escape(event.bin.code)} and the shoppers\' hands">',
           f'<rect x="{X(lo):.1f}" y="{PLAN_TOP_PX}" width="{(hi - lo) * scale:.1f}" height="{n * PLAN_ROW_PX}" '
           f'fill="#f7f9f8" stroke="#c9d3cf"/>']
    plate_h = PLAN_ROW_PX - 20
    for b, a in zip(bins, a_all):
        hit = b.code in marked
        y0 = foot[b.shelf.z]
        out.append(f'<g class="bin{" hit" if hit else ""}" data-bin="{escape(b.code)}">'
                   f'<rect x="{X(a - b.width_m / 2) + 1:.1f}" y="{y0 - plate_h:.1f}" '
                   f'width="{max(2.0, b.width_m * scale - 2):.1f}" height="{plate_h}" rx="3" '
                   f'fill="{"#ffd966" if hit else "#ffffff"}" stroke="{"#b8860b" if hit else "#9fb0a9"}" '
                   f'stroke-width="{3 if hit else 1}"/>'
                   f'<text x="{X(a):.1f}" y="{y0 - plate_h + 13:.1f}" font-size="10" text-anchor="middle" '
                   f'fill="#333">{escape(b.code)}</text></g>')
    for p, a, z in hands:
        x, y = X(a), Y(z)
        out.append(f'<g class="hand" data-candidate="{p.letter}"><circle cx="{x:.1f}" cy="{y:.1f}" r="11" '
                   f'fill="{p.colour}" stroke="#fff" stroke-width="2"/><text x="{x:.1f}" y="{y + 4:.1f}" '
                   f'font-size="12" font-weight="700" text-anchor="middle" fill="#fff">{p.letter}</text></g>')
    out.append('<text class="caption" font-size="11" fill="#555">' + "".join(
        f'<tspan x="10" y="{body_h + 11 + 15 * i}">{escape(line)}</tspan>' for i, line in enumerate(caption))
        + '</text></svg>')
    return "".join(out)


def custom_answer(console: Console, *, visit_id: str, barcode: str, quantity: str) -> Answer | None:
    """A manager's own answer (the "other" form: a visit number, a barcode, signed units) as an :class:`Answer` to
    confirm, naming the customer and the amount; None when the input does not name a visit and product of the
    event's store (the console then says so)."""
    try:
        vid, q = int(visit_id), int(quantity)
    except (TypeError, ValueError):
        return None
    store = console.event.store
    visit = Visit.objects.select_related("shopper").filter(pk=vid, store=store).first()
    product = Product.objects.filter(store=store, barcode=(barcode or "").strip()).first()
    if visit is None or product is None or q == 0:
        return None
    amount = price_to_minor(product.price, store.currency) * q
    what = units_text(q, product.name)
    who = visit.shopper.get_username()
    person = next((p for p in console.people if p.visit == vid), None)
    confirm = (f"Charge {who} {money_display(amount, store.currency)} for {what}?" if q > 0 else
               f"Take {what} off {who}'s bill ({money_display(-amount, store.currency)} less)?")
    return Answer(key="custom", person=person or Person(
        letter="?", name=f"Visit {vid}", account=who, visit=vid, state=visit.state, open=visit.state in OPEN_STATES,
        billed=visit.state == Visit.State.BILLED, distance_m=None, share=None, hand_xyz=None, colour="#777",
        track_id=""), barcode=product.barcode, name=product.name, quantity=q, p=0.0, amount_minor=amount,
        amount_display=money_display(abs(amount), store.currency),
        label=f"Visit {vid} {'took' if q > 0 else 'put back'} {what}", confirm=confirm,
        fields={"visit": vid, "barcode": product.barcode, "quantity": q})
