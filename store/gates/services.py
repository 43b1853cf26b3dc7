"""Gate services: issue and consume entry passes, open visits and move them through their states.

Visit states (DESIGN.md): admitted → shopping → exited → billed → closed; side exits refused, payment_failed,
under_review. Every change writes a :class:`~store.gates.models.VisitTransition` row (append-only).
"""
from __future__ import annotations

import hashlib
import logging
import secrets
import time
from datetime import datetime, timedelta

import segno
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core import signing
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from store.billing.services import PaymentDeclined, payment_authorise
from store.celery import task_send
from store.layout.models import Store
from store.layout.timezones import store_zone

from . import hooks, signals
from .checkout_task import visit_checkout_task
from .models import EntryPass, Gate, Visit, VisitTransition

log = logging.getLogger(__name__)

PASS_SALT = "walkout.gates.entry-pass"

S = Visit.State
ALLOWED_TRANSITIONS: dict[str, set[str]] = {
    S.ADMITTED: {S.SHOPPING, S.EXITED, S.UNDER_REVIEW},
    S.SHOPPING: {S.EXITED, S.UNDER_REVIEW},
    S.EXITED: {S.BILLED, S.PAYMENT_FAILED, S.UNDER_REVIEW},
    S.UNDER_REVIEW: {S.BILLED, S.PAYMENT_FAILED, S.CLOSED},
    S.PAYMENT_FAILED: {S.BILLED, S.CLOSED},
    S.BILLED: {S.CLOSED},
    S.REFUSED: set(),
    S.CLOSED: set(),
}


class GateRefusal(Exception):
    """A pass was refused at the gate. ``code`` is one of: expired, replayed, unknown, invalid, wrong_store,
    no_payment_method, store_full, payment_declined, party_full (every declared guest is in), no_visit (an exit
    scan of a shopper who is not inside), already_inside (a fresh pass of a shopper whose visit is still open: one
    account is admitted once per visit; its guests come in on the same code)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class VisitStateError(ValueError):
    """A visit was asked to move to a state its current state does not allow."""


def gate_key_hash(api_key: str) -> str:
    """SHA-256 hex digest of a gate's API key (the database never stores the key itself)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def gate_key_new() -> tuple[str, str]:
    """A fresh random gate API key (32 bytes, URL-safe base64) and its :func:`gate_key_hash`."""
    api_key = secrets.token_urlsafe(32)
    return api_key, gate_key_hash(api_key)


def gate_create(*, store: Store, name: str) -> tuple[Gate, str]:
    """Register a gate device; returns it and its API key (shown once, stored only as a hash)."""
    api_key, key_hash = gate_key_new()
    gate = Gate.objects.create(store=store, name=name, api_key_hash=key_hash)
    return gate, api_key


def gate_get_active(*, gate_id: int) -> Gate | None:
    """The active gate with this id (its store loaded), or None."""
    return Gate.objects.select_related("store").filter(pk=gate_id, active=True).first()


def gate_key_rotate(*, gate: Gate) -> str:
    """Give a saved ``gate`` a new API key; the old key stops working at once. Returns the key (shown once)."""
    api_key, gate.api_key_hash = gate_key_new()
    gate.save(update_fields=["api_key_hash"])
    log.info("gate %s: API key rotated", gate)
    return api_key


def gate_authenticate(*, api_key: str) -> Gate | None:
    """The active gate whose API key this is, or None."""
    if not api_key:
        return None
    return Gate.objects.select_related("store").filter(api_key_hash=gate_key_hash(api_key), active=True).first()


def guest_policy() -> tuple[int, int]:
    """("bring guests") ``(window_s, cap)``: after a pass admits its holder, scanning the same pass again at the same
    gate within ``settings.WALKOUT["GUEST_WINDOW_S"]`` seconds (default 120) admits one party member, up to the
    number of guests the holder declared and at most ``settings.WALKOUT["GUEST_CAP"]`` (default 4; 0 turns guests
    off). Guests are billed to the holder's card (their visits' ``party_lead``)."""
    window = int(settings.WALKOUT.get("GUEST_WINDOW_S", 120))
    cap = int(settings.WALKOUT.get("GUEST_CAP", 4))
    return max(0, window), max(0, cap)


def pass_issue(*, shopper: AbstractBaseUser, store: Store, guests: int = 0) -> tuple[EntryPass, str]:
    """Issue a single-use entry pass; returns the row and the signed token that the QR code encodes.

    The token is ``django.core.signing.TimestampSigner(salt=PASS_SALT).sign_object({"n", "s", "u"})`` (nonce, store
    code, user id): signed with SECRET_KEY (rotated through SECRET_KEY_FALLBACKS), valid for
    ``settings.WALKOUT["PASS_MAX_AGE_S"]`` seconds. The app asks for a fresh one before it expires (rotation).
    ``guests``: party members the holder brings (clamped to 0 … ``guest_policy()`` cap); each is admitted by scanning
    the same pass again at the same gate (:func:`visit_enter`).
    """
    now = timezone.now()
    max_age = settings.WALKOUT["PASS_MAX_AGE_S"]
    guests = min(max(0, int(guests)), guest_policy()[1])
    entry_pass = EntryPass.objects.create(
        shopper=shopper, store=store, nonce=secrets.token_urlsafe(18), issued_at=now,
        expires_at=now + timedelta(seconds=max_age), guests=guests,
    )
    token = signing.TimestampSigner(salt=PASS_SALT).sign_object(
        {"n": entry_pass.nonce, "s": store.code, "u": shopper.pk}, compress=True
    )
    return entry_pass, token


class PassUnavailable(Exception):
    """No pass can be shown to this shopper now. ``code`` is one of: no_payment_method (no card on file),
    no_store (no store is set up), choose_store (several stores and none named), unknown_store."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


def stores_listed():
    """The stores offered to shoppers (``Store.listed``): never the throwaway stores that ``emulate_store``, replays
    and the benchmarks create (issue #11). A queryset, by name."""
    return Store.objects.filter(listed=True).order_by("name", "pk")


def pass_store_resolve(*, code: str | None = None) -> Store:
    """The store a pass is asked for: the listed store (:func:`stores_listed`) whose ``code`` this is, or the only
    listed store when ``code`` is empty. An unlisted store is unknown here, by its code too.

    Raises :class:`PassUnavailable` (unknown_store, choose_store, no_store).
    """
    code = (code or "").strip()
    if code:
        store = stores_listed().filter(code=code).first()
        if store is None:
            raise PassUnavailable("unknown_store", f"there is no store with the code {code[:64]!r}")
        return store
    stores = list(stores_listed().order_by("pk")[:2])
    if not stores:
        raise PassUnavailable("no_store", "no store is set up yet")
    if len(stores) > 1:
        raise PassUnavailable("choose_store", "choose the store you are entering")
    return stores[0]


def pass_request(*, shopper: AbstractBaseUser, store: Store, guests: int = 0) -> tuple[EntryPass, str]:
    """A shopper asks for an entry pass to ``store``: check the card on file, then :func:`pass_issue`.

    The gate checks the card again at entry (:func:`visit_enter`); this check only spares the shopper a pass that
    would be refused. Raises :class:`PassUnavailable` ("no_payment_method") when no card is on file.
    ``guests``: see :func:`pass_issue`.
    """
    profile = getattr(shopper, "shopper", None)
    if profile is None or not profile.has_payment_method:
        raise PassUnavailable("no_payment_method", "add a payment card before you enter the store")
    return pass_issue(shopper=shopper, store=store, guests=guests)


def pass_timing() -> dict[str, int]:
    """How a client should treat a pass it was just given, in whole seconds from when it received it.

    ``max_age_s``: ``settings.WALKOUT["PASS_MAX_AGE_S"]``. ``expires_in_s``: one second less, because the signed
    timestamp has whole-second resolution, so a token can expire up to a second before ``expires_at``.
    ``refresh_in_s``: when to fetch the next pass (three quarters of the lifetime, at least 1 s).
    """
    max_age = int(settings.WALKOUT["PASS_MAX_AGE_S"])
    return {"max_age_s": max_age, "expires_in_s": max(0, max_age - 1), "refresh_in_s": max(1, (max_age * 3) // 4)}


def pass_qr_svg(*, token: str) -> str:
    """The QR code of a pass ``token`` as inline SVG markup (segno; error correction M, 4-module quiet zone).

    The SVG has no width/height (it scales with its CSS box) and draws its own white background, so it scans on a
    dark-mode page too.
    """
    qr = segno.make(token, error="m", micro=False)
    return qr.svg_inline(scale=1, border=4, omitsize=True, dark="#000", light="#fff", svgclass="pass-qr",
                         lineclass=None)


def _refuse(code: str, message: str, gate: Gate) -> GateRefusal:
    log.warning("gate %s refused a pass: %s (%s)", gate, message, code)
    return GateRefusal(code, message)


def _cart_push(visit: Visit) -> None:
    """Push ``visit``'s cart snapshot to the shopper's app (``carts.services.ledger.cart_publish``, after commit), so
    the phone turns to the live cart at the gate and shows the exit at once."""
    hooks.cart_push(visit=visit)


def _pass_verify(*, token: str, gate: Gate) -> EntryPass:
    """The pass ``token`` names, after checking its signature, age, store and holder; not consumed yet.
    Raises :class:`GateRefusal` (invalid, expired, wrong_store, unknown)."""
    try:
        data = signing.TimestampSigner(salt=PASS_SALT).unsign_object(
            token, max_age=settings.WALKOUT["PASS_MAX_AGE_S"]
        )
    except signing.SignatureExpired:
        raise _refuse("expired", "the pass has expired: show a fresh one", gate) from None
    except signing.BadSignature:
        raise _refuse("invalid", "the pass is not one of ours (bad signature)", gate) from None
    if not isinstance(data, dict) or not {"n", "s", "u"} <= data.keys():
        raise _refuse("invalid", "the pass is malformed", gate)
    if data["s"] != gate.store.code:
        raise _refuse("wrong_store", f"the pass is for store {data['s']!r}, not this one", gate)
    entry_pass = EntryPass.objects.select_related("shopper", "store").filter(nonce=data["n"]).first()
    if entry_pass is None or entry_pass.shopper_id != data["u"]:
        raise _refuse("unknown", "no such pass", gate)
    if entry_pass.expires_at < timezone.now():
        raise _refuse("expired", "the pass has expired: show a fresh one", gate)
    return entry_pass


def _guest_admit(*, entry_pass: EntryPass, gate: Gate, at: datetime, session: str) -> Visit:
    """The pass was used already: admit a party member if :func:`guest_policy` allows (same gate, within the
    window, a declared guest left, the holder's visit still open). Called inside the consuming transaction.
    Raises :class:`GateRefusal` ("replayed", or "party_full" when every declared guest is in)."""
    window_s, cap = guest_policy()
    allowed = min(entry_pass.guests, cap)
    lead = Visit.objects.filter(entry_pass=entry_pass, state__in=[S.ADMITTED, S.SHOPPING]).first()
    if allowed == 0 or lead is None:
        raise _refuse("replayed", "this pass was already used", gate)
    # One conditional UPDATE decides, so two guests scanned at once cannot both take the last place.
    taken = EntryPass.objects.filter(
        pk=entry_pass.pk, used_gate=gate, used_at__gte=timezone.now() - timedelta(seconds=window_s),
        guests_admitted__lt=allowed,
    ).update(guests_admitted=F("guests_admitted") + 1)
    if taken != 1:
        fresh = EntryPass.objects.get(pk=entry_pass.pk)
        if fresh.used_gate_id == gate.pk and fresh.guests_admitted >= allowed and fresh.used_at and (
                fresh.used_at >= timezone.now() - timedelta(seconds=window_s)):
            raise _refuse("party_full", f"all {allowed} guest(s) of this pass are in already", gate)
        raise _refuse("replayed", "this pass was already used", gate)
    visit = Visit.objects.create(store=gate.store, shopper=entry_pass.shopper, entry_pass=None, party_lead=lead,
                                 state=S.ADMITTED, session=session, entered_at=at)
    VisitTransition.objects.create(visit=visit, from_state="", to_state=S.ADMITTED, at=at,
                                   reason=f"gate {gate.name}: guest of visit {lead.pk}")
    return visit


def visit_open_max_h() -> float:
    """Hours after entry beyond which an ``admitted``/``shopping`` visit no longer counts as "inside" at the gate
    (``settings.WALKOUT["VISIT_OPEN_MAX_H"]``, default 12): a visit the store never saw leave (a lost track, a
    crash) must not lock its shopper out for good. Closing such visits is the store loop's job."""
    return float(settings.WALKOUT.get("VISIT_OPEN_MAX_H", 12.0))


def visit_inside_for(*, shopper_id: int, now: datetime | None = None) -> Visit | None:
    """The shopper's own open visit (admitted or shopping, not a guest's, entered within :func:`visit_open_max_h`),
    in any store, or None."""
    now = now or timezone.now()
    return (Visit.objects.select_related("store")
            .filter(shopper_id=shopper_id, party_lead__isnull=True, state__in=[S.ADMITTED, S.SHOPPING],
                    entered_at__gte=now - timedelta(hours=visit_open_max_h()))
            .order_by("-entered_at", "-pk").first())


def _refuse_if_inside(*, entry_pass: EntryPass, gate: Gate) -> None:
    """A fresh pass of a shopper who is inside already: refuse ("already_inside"), so that a second scan opens no
    second visit (a second hold, a second receipt). Locks the shopper's row first, so that two fresh passes scanned
    at once at two gates admit once. Call inside the consuming transaction."""
    from django.contrib.auth import get_user_model

    get_user_model().objects.select_for_update().filter(pk=entry_pass.shopper_id).first()
    inside = visit_inside_for(shopper_id=entry_pass.shopper_id)
    if inside is not None:
        where = "" if inside.store_id == gate.store_id else f" at {inside.store.name}"
        since = timezone.localtime(inside.entered_at, _store_tz(inside.store)).strftime("%H:%M")
        raise _refuse("already_inside",
                      f"this shopper is already inside{where} (came in at {since}); one pass admits one person "
                      "once — leave through the exit first (guests are scanned on the holder's code)", gate)


def _store_tz(store: Store):
    return store_zone(store)


def visit_enter(*, token: str, gate: Gate, at: datetime | None = None, session: str = "live") -> Visit:
    """Admit the holder of ``token`` at ``gate``: verify the pass, consume it once, open a visit, authorise the card.

    ``at`` is when the shopper entered (default now; a replay passes the recording's time). The token's age is
    checked against the wall clock. Single use is enforced atomically (``UPDATE … WHERE used_at IS NULL``; RFC 6238
    §5.2: a verifier must not accept the same code twice), so two simultaneous scans admit once. The one exception
    is "bring guests" (:func:`guest_policy`): a pass that declared guests, scanned again at the same gate within
    the window, admits one party member per scan (a visit with ``party_lead`` set, billed to the holder's card).

    Raises :class:`GateRefusal` with a reason code; a refused pass opens no visit (a declined card leaves a
    ``refused`` visit with its failed payment attempt, for the record).
    """
    at = at or timezone.now()
    entry_pass = _pass_verify(token=token, gate=gate)
    profile = getattr(entry_pass.shopper, "shopper", None)
    if profile is None or not profile.has_payment_method:
        raise _refuse("no_payment_method", "add a payment card in the app before entering", gate)
    inside = Visit.objects.filter(store=gate.store, state__in=[S.ADMITTED, S.SHOPPING]).count()
    if inside >= gate.store.capacity:
        raise _refuse("store_full", "the store is full: please wait a moment", gate)

    with transaction.atomic():
        consumed = EntryPass.objects.filter(pk=entry_pass.pk, used_at__isnull=True).update(
            used_at=timezone.now(), used_gate=gate
        )
        if consumed != 1:
            visit = _guest_admit(entry_pass=entry_pass, gate=gate, at=at, session=session)
        else:
            _refuse_if_inside(entry_pass=entry_pass, gate=gate)  # raises: the pass's consumption rolls back
            visit = Visit.objects.create(
                store=gate.store, shopper=entry_pass.shopper, entry_pass=entry_pass, state=S.ADMITTED,
                session=session, entered_at=at,
            )
            VisitTransition.objects.create(visit=visit, from_state="", to_state=S.ADMITTED, at=at,
                                           reason=f"gate {gate.name}")
    try:
        payment_authorise(visit=visit)
    except PaymentDeclined as exc:
        visit_transition(visit=visit, to_state=S.REFUSED, at=at, reason=f"card declined: {exc}", force=True)
        raise _refuse("payment_declined", f"the card was declined: {exc}", gate) from None
    log.info("visit %s admitted at gate %s%s", visit.pk, gate,
             f" (guest of visit {visit.party_lead_id})" if visit.party_lead_id else "")
    _cart_push(visit)
    transaction.on_commit(lambda: signals.visit_admitted.send(sender=Visit, visit=visit, gate=gate, at=at),
                          robust=True)
    return visit


def visit_exit_scan(*, token: str, gate: Gate, at: datetime | None = None) -> list[Visit]:
    """The optional exit scan: the shopper shows a fresh pass at an exit scanner of ``gate``'s store.

    The pass is verified and consumed exactly as at the entry (single use), then every open visit (admitted or
    shopping) of its holder in this store — theirs and their guests' — goes ``exited`` (:func:`visit_exit`), and
    each is checked out after ``settings.WALKOUT["EXIT_SETTLE_S"]`` seconds, once the transaction commits
    (``store.gates.checkout_task.visit_checkout_task``: cart → receipt → capture). Returns the exited visits.
    Raises :class:`GateRefusal` (the entry codes, or "no_visit" when the holder is not inside: the pass is then
    not spent, since nothing happened).

    The exit is the truth the gate is told: the visits' ``checkout_due_at`` is written in the exit's transaction,
    so when the task cannot be queued (the Celery broker is down) the scan still answers that the shopper left,
    and :func:`visits_stuck_sweep` bills them once they are :func:`checkout_grace_s` past due.
    """
    at = at or timezone.now()
    entry_pass = _pass_verify(token=token, gate=gate)
    with transaction.atomic():
        consumed = EntryPass.objects.filter(pk=entry_pass.pk, used_at__isnull=True).update(
            used_at=timezone.now(), used_gate=gate
        )
        if consumed != 1:
            raise _refuse("replayed", "this pass was already used", gate)
        visits = list(Visit.objects.filter(store=gate.store, shopper=entry_pass.shopper,
                                           state__in=[S.ADMITTED, S.SHOPPING]).order_by("pk"))
        if not visits:
            raise _refuse("no_visit", "no visit of this shopper is open in this store", gate)
        exited = [visit_exit(visit=v, at=at, reason=f"exit scan at gate {gate.name}") for v in visits]
        for v in exited:
            _cart_push(v)
            transaction.on_commit(lambda v=v: signals.visit_exit_scanned.send(sender=Visit, visit=v, gate=gate, at=at),
                                  robust=True)
        if not _store_loop_on():  # with the store loop, the loop bills once the visit's last events are decided
            for v in exited:
                transaction.on_commit(lambda vid=v.pk: checkout_enqueue(visit_id=vid))
    log.info("gate %s: exit scan, visits %s exited", gate, [v.pk for v in exited])
    return exited


def _store_loop_on() -> bool:
    """``settings.WALKOUT["STORE_LOOP"]`` is on: the live store loop (``carts.runtime``) follows exits and bills."""
    return str(settings.WALKOUT.get("STORE_LOOP", "off")).lower() in ("on", "1", "true", "yes")


def exit_settle_s() -> float:
    """Seconds after an exit during which late shelf events still settle to the visit
    (``settings.WALKOUT["EXIT_SETTLE_S"]``, default 3)."""
    return float(settings.WALKOUT.get("EXIT_SETTLE_S", 3.0))


def checkout_grace_s() -> float:
    """Seconds past ``checkout_due_at`` before :func:`visits_stuck_sweep` takes a visit over from its queued checkout
    task (``settings.WALKOUT["CHECKOUT_STUCK_S"]``, default 30)."""
    return float(settings.WALKOUT.get("CHECKOUT_STUCK_S", 30.0))


#: Checkouts that could not be queued since the process started (the broker was down); the sweeper bills them.
ENQUEUE_FAILURES = {"count": 0}


def checkout_enqueue(*, visit_id: int, countdown: float | None = None, at: datetime | None = None,
                     queued_at: float | None = None) -> bool:
    """Queue ``visit_id``'s checkout task (``checkout_task.visit_checkout_task``, run by any Celery worker: the billing
    worker) to run after ``countdown`` seconds (default :func:`exit_settle_s`); ``at``: the time the checkout is
    recorded at (timezone-aware UTC; default when the task runs); ``queued_at``: wall time (s UTC) it is queued at,
    default now (the task logs how long it waited in the queue). Never raises: when the broker does not take it,
    logs, counts (:data:`ENQUEUE_FAILURES`) and returns False — the visit's ``checkout_due_at`` is already
    committed, so :func:`visits_stuck_sweep` bills it. Call after the exit commits (``transaction.on_commit``).
    In the embedded profile (``CELERY_TASK_ALWAYS_EAGER``) the task runs here, now."""
    try:
        # one quick retry only: the caller is waiting for this answer, and the sweeper covers an outage
        task_send(visit_checkout_task, args=[visit_id], kwargs={"at": at.isoformat() if at else None,
                                                               "queued_at": queued_at or time.time()},
                  countdown=exit_settle_s() if countdown is None else countdown, retry=True,
                  retry_policy={"max_retries": 1, "interval_start": 0.2})
        return True
    except Exception as exc:  # kombu raises OperationalError, redis ConnectionError, OSError…: all mean "not queued"
        ENQUEUE_FAILURES["count"] += 1
        log.error("visit %s: the checkout task could not be queued (%s: %s); the stuck-visit sweeper will bill it",
                  visit_id, type(exc).__name__, exc)
        return False


def visits_stuck_sweep(now: datetime | None = None, *, limit: int = 100) -> int:
    """Check out every visit still ``exited`` more than :func:`checkout_grace_s` after its ``checkout_due_at``
    (``now``: timezone-aware UTC, default the wall clock): its checkout task was lost (broker outage, worker crash).

    Runs the checkout here, without the broker (``carts.services.checkout.visit_checkout``: billed, or under review, or
    payment failed). Each visit is claimed first by a conditional UPDATE that pushes its due time
    ``CHECKOUT_RETRY_S`` (60 s) on, so two sweepers never run one checkout twice, and a checkout that raises is
    retried a minute later instead of every sweep. Called by the Celery beat task ``visits_stuck_sweep_task``,
    ``manage.py sweep_visits`` and the store worker's housekeeping, every few seconds. At most ``limit`` visits per
    call. Returns how many visits it checked out (without an exception).
    """
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=checkout_grace_s())
    due = list(Visit.objects.filter(state=S.EXITED, checkout_due_at__lte=cutoff)
               .order_by("checkout_due_at", "pk").values_list("pk", "checkout_due_at")[:limit])
    done = 0
    for visit_id, due_at in due:
        claimed = Visit.objects.filter(pk=visit_id, state=S.EXITED, checkout_due_at=due_at).update(
            checkout_due_at=now + timedelta(seconds=CHECKOUT_RETRY_S))
        if claimed != 1:
            continue  # another sweeper took it, or its task billed it meanwhile
        visit = Visit.objects.select_related("store").get(pk=visit_id)
        log.warning("visit %s: still exited %.0f s after its checkout was due; checking it out now", visit_id,
                    (now - due_at).total_seconds())
        try:
            hooks.visit_checkout(visit=visit)
        except Exception:
            log.exception("visit %s: checkout by the sweeper failed; retried in %d s", visit_id, CHECKOUT_RETRY_S)
            continue
        done += 1
    return done


#: Seconds before the sweeper retries a visit it claimed (and whose checkout raised).
CHECKOUT_RETRY_S = 60


def visit_idle_exit_s() -> float:
    """Seconds without any activity after which an ``admitted``/``shopping`` visit whose track the store no longer
    sees is taken for abandoned by :func:`visits_abandoned_sweep` (``settings.WALKOUT["VISIT_IDLE_EXIT_S"]``,
    default 3600): the store loop that would have seen the shopper leave died with its state (an embedded
    ``emulate_store`` or ``demo`` killed mid-run), or the replay that admitted the visit ended without an exit."""
    return float(settings.WALKOUT.get("VISIT_IDLE_EXIT_S", 3600.0))


def visit_last_activity(*, visit: Visit) -> datetime:
    """The latest wall-clock sign of life of ``visit`` (timezone-aware UTC): when its pass was scanned (its party
    lead's, for a guest), its last cart event, its cart's last push (entry, every cart change, review decisions),
    and its entry and transitions as stored (a replay stores the recording's times: never later than the rest)."""
    times = [visit.entered_at]
    entry_pass = EntryPass.objects.filter(visit__pk__in=[visit.pk, visit.party_lead_id or 0]).values_list(
        "used_at", flat=True)
    times += [t for t in entry_pass if t is not None]
    times += hooks.activity_times(visit=visit)
    last_transition = VisitTransition.objects.filter(visit=visit).order_by("-at").values_list("at", flat=True).first()
    if last_transition is not None:
        times.append(last_transition)
    return max(times)


def visit_abandon(*, visit: Visit, reason: str, at: datetime | None = None):
    """End an open (``admitted``/``shopping``) visit that nobody will see leave any more: it goes ``exited``
    (``reason`` logged, at ``at``, default now, never before the entry) and is checked out at once
    (``carts.services.checkout.visit_checkout``: billed for what its cart holds, ``under_review`` while a review names
    it, or ``payment_failed``). Returns ``(visit, receipt or None)``. Raises :class:`VisitStateError` for a visit that
    is not open."""
    at = max(at or timezone.now(), visit.entered_at)
    if visit.state not in (S.ADMITTED, S.SHOPPING):
        raise VisitStateError(f"visit {visit.pk} is {visit.state}, not open")
    visit = visit_exit(visit=visit, at=at, reason=reason[:200])
    hooks.cart_push(visit=visit)
    receipt = hooks.visit_checkout(visit=visit, at=at)
    visit.refresh_from_db()
    log.warning("visit %s abandoned (%s): %s", visit.pk, reason, visit.state)
    return visit, receipt


def visits_abandoned_sweep(now: datetime | None = None, *, limit: int = 100) -> list[Visit]:
    """Exit and check out every ``admitted``/``shopping`` visit with no activity (:func:`visit_last_activity`) for
    :func:`visit_idle_exit_s` seconds before ``now`` (timezone-aware UTC, default the clock) whose track is not on
    its store's live map (``hooks.track_seen``): whatever would have seen the shopper leave is gone (a store loop
    killed with its state, a replay over), and without this the shopper stays "inside" and is refused at every
    gate. Each goes through :func:`visit_abandon` (billed, under review, or payment failed). Called with
    :func:`visits_stuck_sweep` by the beat task and ``manage.py sweep_visits``. At most ``limit`` visits. Returns
    the visits it ended; a checkout that raises is logged and the next sweep tries again."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=visit_idle_exit_s())
    ended = []
    for visit in (Visit.objects.select_related("store").filter(state__in=[S.ADMITTED, S.SHOPPING])
                  .order_by("entered_at", "pk")[: limit * 10]):
        if len(ended) >= limit:
            break
        last = visit_last_activity(visit=visit)
        if last > cutoff or hooks.track_seen(visit=visit):
            continue
        idle_min = (now - last).total_seconds() / 60
        try:
            visit, _ = visit_abandon(visit=visit, at=now, reason=(
                f"abandoned: no activity for {idle_min:.0f} min and its track is gone (the store loop or replay "
                "that admitted it stopped)"))
        except VisitStateError:
            continue  # it left meanwhile
        except Exception:
            log.exception("visit %s: ending the abandoned visit failed; the next sweep tries again", visit.pk)
            continue
        ended.append(visit)
    return ended


def visit_transition(*, visit: Visit, to_state: str, at: datetime | None = None, reason: str = "",
                     force: bool = False) -> Visit:
    """Move ``visit`` to ``to_state`` under a row lock and log the transition.

    Raises :class:`VisitStateError` if ``ALLOWED_TRANSITIONS`` does not allow it (``force`` skips the check, used
    only for the gate's own refusal). A transition to the state the visit is already in is a no-op.
    """
    at = at or timezone.now()
    with transaction.atomic():
        locked = Visit.objects.select_for_update().get(pk=visit.pk)
        if locked.state == to_state:
            return locked
        if not force and to_state not in ALLOWED_TRANSITIONS.get(locked.state, set()):
            raise VisitStateError(f"visit {locked.pk} cannot go from {locked.state} to {to_state}")
        VisitTransition.objects.create(visit=locked, from_state=locked.state, to_state=to_state, at=at, reason=reason)
        locked.state = to_state
        fields = ["state"]
        if to_state == S.EXITED:
            locked.exited_at = at
            # wall clock, not ``at`` (a replay's exits carry the recording's time): the sweeper's due time
            locked.checkout_due_at = timezone.now() + timedelta(seconds=exit_settle_s())
            fields += ["exited_at", "checkout_due_at"]
        elif to_state == S.BILLED:
            locked.billed_at = at
            fields.append("billed_at")
        locked.save(update_fields=fields)
    visit.state = locked.state
    visit.exited_at = locked.exited_at
    visit.billed_at = locked.billed_at
    visit.checkout_due_at = locked.checkout_due_at
    return locked


def visit_bind_track(*, visit: Visit, track_id: str, at: datetime | None = None) -> Visit:
    """Bind the shopper track seen in the gate zone at admission to ``visit``; an admitted visit is then
    ``shopping``. A visit the gate moved on meanwhile (an exit scan right after the entry, read under the row lock:
    the store loop binds seconds behind the gate) gets the track and keeps its state: the shopper's picks before the
    exit are still theirs. Returns the visit as stored."""
    with transaction.atomic():
        locked = Visit.objects.select_for_update().get(pk=visit.pk)
        Visit.objects.filter(pk=visit.pk).update(track_id=track_id)
        visit.track_id = locked.track_id = track_id
        if locked.state not in (S.ADMITTED, S.SHOPPING):
            log.info("visit %s was %s before its track %s was bound", locked.pk, locked.state, track_id)
            return locked
        return visit_transition(visit=visit, to_state=S.SHOPPING, at=at, reason=f"bound to track {track_id}")


def visit_exit(*, visit: Visit, at: datetime | None = None, reason: str = "left through the exit zone") -> Visit:
    """The shopper left: the visit is ``exited`` and waits for its last shelf events to settle before billing."""
    return visit_transition(visit=visit, to_state=S.EXITED, at=at, reason=reason)
