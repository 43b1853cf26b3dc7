"""Review decisions made after a visit was billed move the money so that what the card paid net (captures and
charges less refunds) always equals the value of the final cart: a take is charged, a later put-back of it is
refunded from that charge (even when the receipt never had the product), refunds never exceed what was captured and
charged, and a mixed grab's extra line is one decision with the main line (charged once, never applied twice)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from carts.models import CartEvent, ReviewItem
from carts.offline.replay import billed_receipts
from store.accounts.demo import demo_shopper_ensure
from carts.services.checkout import visit_checkout
from carts.services.ledger import CartChange, cart_apply, cart_lines
from carts.services.review import review_resolve
from carts.services.review_queue import ReviewError
from sensors.models import ShelfEvent
from store.billing.models import DummyPaymentMethod, PaymentAttempt
from store.gates.models import Visit
from store.gates.services import gate_create, pass_issue, visit_bind_track, visit_enter, visit_exit
from store.inventory.models import Product
from store.layout.models import Bin, Gondola, Shelf, Store

pytestmark = pytest.mark.django_db

K, S = PaymentAttempt.Kind, PaymentAttempt.Status


@pytest.fixture
def shop(settings):
    settings.PAYMENT_PROVIDER = "dummy"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    store = Store.objects.create(code="s1", name="Store One", currency="usd")
    gondola = Gondola.objects.create(store=store, number=1, x=0, y=0, width_m=1, depth_m=0.5, height_m=2)
    shelf = Shelf.objects.create(gondola=gondola, number=1, z=1.0)
    bin_ = Bin.objects.create(shelf=shelf, store=store, number=1, code="1-1-1", x=0.2, y=0.1, z=1.0,
                              width_m=0.3, depth_m=0.4)
    water = Product.objects.create(store=store, barcode="0001", name="Water", price=Decimal("1.99"),
                                   unit_weight_g=600.0)
    chips = Product.objects.create(store=store, barcode="0002", name="Chips", price=Decimal("2.50"),
                                   unit_weight_g=150.0)
    gate, _ = gate_create(store=store, name="g1")
    return store, bin_, water, chips, gate


def _billed_visit(shop, *, water_units: int = 1) -> Visit:
    """A shopper with a card enters (hold authorised), takes ``water_units`` water, leaves; billed (captured)."""
    store, bin_, water, _, gate = shop
    user = demo_shopper_ensure("ann@walkout.test")
    visit = visit_enter(token=pass_issue(shopper=user, store=store)[1], gate=gate, session="t")
    visit = visit_bind_track(visit=visit, track_id="t1")
    cart_apply(change=CartChange(visit=visit, product=water, quantity=water_units, confidence=0.95, evidence={}),
               shelf_event=_shelf_event(shop, -600.0 * water_units))
    visit_exit(visit=visit)
    receipt = visit_checkout(visit=visit)
    assert receipt is not None and receipt.total_minor == 199 * water_units
    visit.refresh_from_db()
    assert visit.state == Visit.State.BILLED
    return visit


def _shelf_event(shop, delta_g: float) -> ShelfEvent:
    store, bin_ = shop[0], shop[1]
    t = timezone.now() - timedelta(seconds=30 - ShelfEvent.objects.count())
    return ShelfEvent.objects.create(store=store, session="t", bin=bin_, bin_codes=[bin_.code], t_start=t,
                                     t_end=t + timedelta(seconds=0.8), delta_g=delta_g, hypotheses=[])


def _item(shop, visit, delta_g: float) -> ReviewItem:
    return ReviewItem.objects.create(shelf_event=_shelf_event(shop, delta_g), reason="test",
                                     candidates=[{"visit": visit.pk}])


def net_paid(visit: Visit) -> int:
    """Minor units the card paid net: succeeded captures and charges, less succeeded refunds."""
    def total(*kinds):
        return visit.payment_attempts.filter(kind__in=kinds, status=S.SUCCEEDED).aggregate(
            s=Sum("amount_minor"))["s"] or 0
    return total(K.CAPTURE, K.CHARGE) - total(K.REFUND)


def cart_value(visit: Visit) -> int:
    return sum(line["line_total_minor"] for line in cart_lines(visit=visit))


def test_a_take_charged_after_billing_is_refunded_by_a_later_put_back(shop):
    _, _, water, chips, _ = shop
    visit = _billed_visit(shop)
    # the review adds chips the receipt never had: charged off-session
    out = review_resolve(item=_item(shop, visit, -150), visit_id=visit.pk, barcode="0002", quantity=1, by="mia")
    assert out.correction.kind == K.CHARGE and out.correction.amount_minor == 250 and not out.checkout_errors
    assert net_paid(visit) == cart_value(visit) == 199 + 250
    # a later review decides the chips were put back: refunded from that charge (the receipt has no chips line)
    out = review_resolve(item=_item(shop, visit, 150), visit_id=visit.pk, barcode="0002", quantity=-1, by="mia")
    assert out.correction.kind == K.REFUND and out.correction.amount_minor == 250
    assert out.correction.intent_ref == PaymentAttempt.objects.get(visit=visit, kind=K.CHARGE).intent_ref
    assert out.cart_event.evidence["correction"]["from_charges"][0]["units"] == 1
    assert net_paid(visit) == cart_value(visit) == 199
    assert billed_receipts(session="t") == {"t1": {"0001": 1, "0002": 0}}
    # nothing left to take back: refused, nothing written, nothing refunded
    refunds = PaymentAttempt.objects.filter(kind=K.REFUND).count()
    item = _item(shop, visit, 150)
    with pytest.raises(ReviewError):
        review_resolve(item=item, visit_id=visit.pk, barcode="0002", quantity=-1, by="mia")
    item.refresh_from_db()
    assert item.status == "open" and PaymentAttempt.objects.filter(kind=K.REFUND).count() == refunds
    assert net_paid(visit) == cart_value(visit) == 199


def test_put_backs_of_billed_and_charged_units_refund_each_once_and_no_more(shop):
    visit = _billed_visit(shop)  # receipt: 1 water, captured
    review_resolve(item=_item(shop, visit, -600), visit_id=visit.pk, barcode="0001", quantity=1, by="mia")
    assert net_paid(visit) == cart_value(visit) == 2 * 199
    # both waters put back in one decision: one from the review's charge, one from the receipt line
    out = review_resolve(item=_item(shop, visit, 1200), visit_id=visit.pk, barcode="0001", quantity=-2, by="mia")
    corr = out.cart_event.evidence["correction"]
    assert corr["from_receipt"] == 1 and sum(p["units"] for p in corr["from_charges"]) == 1
    assert net_paid(visit) == cart_value(visit) == 0
    assert billed_receipts(session="t") == {"t1": {"0001": 0}}
    # the cart is empty and nothing is left to refund: a third put-back is refused before any money moves
    with pytest.raises(ReviewError):
        review_resolve(item=_item(shop, visit, 600), visit_id=visit.pk, barcode="0001", quantity=-1, by="mia")
    assert net_paid(visit) == 0


def test_a_put_back_of_a_unit_whose_charge_was_declined_refunds_nothing(shop, monkeypatch):
    visit = _billed_visit(shop)
    DummyPaymentMethod.objects.update(behaviour=DummyPaymentMethod.Behaviour.DECLINE)
    out = review_resolve(item=_item(shop, visit, -150), visit_id=visit.pk, barcode="0002", quantity=1, by="mia")
    assert out.checkout_errors  # the decision stands, the charge failed and is reported
    out = review_resolve(item=_item(shop, visit, 150), visit_id=visit.pk, barcode="0002", quantity=-1, by="mia")
    assert out.correction is None and out.cart_event.evidence["correction"]["from_unpaid"] == 1
    assert not PaymentAttempt.objects.filter(kind=K.REFUND).exists()
    assert net_paid(visit) == cart_value(visit) == 199


def test_an_extra_line_on_a_billed_visit_is_charged_once_with_its_decision(shop):
    visit = _billed_visit(shop)
    out = review_resolve(item=_item(shop, visit, -750), visit_id=visit.pk, barcode="0001", quantity=1, by="oracle",
                         extra_lines=[(visit.pk, "0002", 1)])
    assert not out.checkout_errors
    assert PaymentAttempt.objects.filter(visit=visit, kind=K.CHARGE, status=S.SUCCEEDED).count() == 2
    assert net_paid(visit) == cart_value(visit) == 2 * 199 + 250
    assert billed_receipts(session="t") == {"t1": {"0001": 2, "0002": 1}}
    assert [e["barcode"] for e in out.item.resolution["extra"]] == ["0002"]
    # a decision that fails writes none of its extra lines: retrying it cannot apply them twice
    item = _item(shop, visit, 600)
    events = CartEvent.objects.count()
    for _ in range(2):
        with pytest.raises(ReviewError):
            review_resolve(item=item, visit_id=visit.pk, barcode="0001", quantity=-5, by="oracle",
                           extra_lines=[(visit.pk, "0002", 1)])
    assert CartEvent.objects.count() == events
    assert net_paid(visit) == cart_value(visit)
