"""Tax lines on receipts: per product tax category rate, integer minor units, rounded half-up once per rate on the
receipt (the rule stated in ``store.billing.services.tax_lines``), the charge captured includes the tax, refunds give
back the tax of the units refunded (all of it when every unit is refunded), and the receipt page and e-mail show it."""
from __future__ import annotations

from decimal import Decimal

import pytest

from carts.selectors import receipt_detail
from store.billing.models import PaymentAttempt, ReceiptTax
from store.billing.services import (
    ReceiptLineData, payment_authorise, receipt_issue, receipt_refund_line, tax_lines, tax_minor,
)
from store.inventory.models import Product, TaxCategory
from tests.test_billing_dummy import HOLD, _dummy, make_visit  # noqa: F401  (autouse: the dummy provider)

pytestmark = pytest.mark.django_db
K, S = PaymentAttempt.Kind, PaymentAttempt.Status


def line(pid: int, qty: int, unit: int, rate: str = "0", cat: str = "") -> ReceiptLineData:
    return ReceiptLineData(product_id=pid, barcode=f"b{pid}", name=f"P{pid}", quantity=qty, unit_price_minor=unit,
                           tax_rate_percent=Decimal(rate), tax_category=cat)


def test_tax_minor_rounds_half_up_in_decimal():
    assert tax_minor(1000, Decimal("8.875")) == 89       # 88.75
    assert tax_minor(250, Decimal("7")) == 18            # 17.5 → 18 (half up, not to even)
    assert tax_minor(249, Decimal("7")) == 17            # 17.43
    assert tax_minor(150, Decimal("5")) == 8             # 7.5 → 8
    assert tax_minor(0, Decimal("20")) == 0 and tax_minor(999, Decimal("0")) == 0
    with pytest.raises(TypeError):
        tax_minor(100, 7.0)
    with pytest.raises(ValueError):
        tax_minor(100, Decimal("101"))
    with pytest.raises(ValueError):
        tax_minor(-1, Decimal("5"))


def test_tax_is_rounded_once_per_rate_not_per_line():
    lines = [line(1, 1, 50, "5", "Snacks"), line(2, 1, 50, "5", "Drinks"), line(3, 2, 300, "0"),
             line(4, 1, 1000, "8.875", "Prepared food")]
    taxes = tax_lines(lines)
    assert [(t.label, t.rate_percent, t.taxable_minor, t.tax_minor) for t in taxes] == [
        ("Drinks / Snacks", Decimal("5.000"), 100, 5),           # 5 % of 1.00 = 0.05, not 0.03 + 0.03
        ("Prepared food", Decimal("8.875"), 1000, 89)]
    assert tax_lines([line(1, 3, 100)]) == []
    with pytest.raises(ValueError):
        line(1, 1, 100, "-1")


def test_the_charge_captured_includes_tax_and_refunds_give_it_back():
    visit = make_visit()
    store = visit.store
    food = TaxCategory.objects.create(store=store, name="Prepared food", rate_percent=Decimal("8.875"))
    products = [Product.objects.create(store=store, barcode=f"t{i}", name=n, price=Decimal(p), unit_weight_g=100,
                                       tax_category=cat) for i, (n, p, cat) in
                enumerate([("Sandwich", "3.33", food), ("Apple", "0.80", None)])]
    payment_authorise(visit=visit)
    lines = [ReceiptLineData(product_id=products[0].pk, barcode="t0", name="Sandwich", quantity=3,
                             unit_price_minor=333, tax_rate_percent=food.rate_percent, tax_category=food.name),
             ReceiptLineData(product_id=products[1].pk, barcode="t1", name="Apple", quantity=2, unit_price_minor=80)]
    receipt = receipt_issue(visit=visit, lines=lines)
    # 3 × 3.33 = 9.99 taxable; 8.875 % = 0.8866… → 0.89; apples untaxed 1.60
    assert (receipt.tax_minor, receipt.total_minor) == (89, 999 + 160 + 89)
    assert list(ReceiptTax.objects.filter(receipt=receipt).values_list("label", "taxable_minor", "tax_minor")) == [
        ("Prepared food", 999, 89)]
    capture = visit.payment_attempts.get(kind=K.CAPTURE)
    assert capture.status == S.SUCCEEDED and capture.amount_minor == receipt.total_minor
    # issuing again is idempotent (same lines, same rates), never a second capture
    assert receipt_issue(visit=visit, lines=lines).pk == receipt.pk
    assert visit.payment_attempts.filter(kind=K.CAPTURE).count() == 1
    sandwich = receipt.lines.get(barcode="t0")
    amounts = [receipt_refund_line(receipt_line=sandwich, quantity=1, reason="x").amount_minor for _ in range(3)]
    # tax of what is left before, less after: 89 - 59 (6.66 → 0.59), 59 - 30 (3.33 → 0.2955 → 0.30), 30 - 0
    assert amounts == [333 + 30, 333 + 29, 333 + 30] and sum(amounts) == 999 + 89
    apple = receipt.lines.get(barcode="t1")
    assert receipt_refund_line(receipt_line=apple, quantity=2, reason="x").amount_minor == 160

    view = receipt_detail(receipt=receipt)
    assert view.subtotal_display == "$11.59" and view.total_display == "$12.48"
    assert view.taxes == [("Prepared food", "8.875 %", "$9.99", "$0.89")]


def test_untaxed_receipt_has_no_tax_lines():
    visit = make_visit()
    p = Product.objects.create(store=visit.store, barcode="u1", name="Water", price=Decimal("1.00"), unit_weight_g=500)
    payment_authorise(visit=visit)
    receipt = receipt_issue(visit=visit, lines=[ReceiptLineData(product_id=p.pk, barcode="u1", name="Water",
                                                                quantity=2, unit_price_minor=100)])
    assert (receipt.tax_minor, receipt.total_minor) == (0, 200) and not receipt.taxes.exists()
    assert receipt_detail(receipt=receipt).taxes == []


def test_checkout_bills_each_product_at_its_category_rate(settings):
    from django.utils import timezone

    from carts.models import CartEvent
    from carts.services.checkout import visit_checkout
    from store.gates.models import Visit

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    visit = make_visit()
    store = visit.store
    hot = TaxCategory.objects.create(store=store, name="Hot food", rate_percent=Decimal("10"))
    pie = Product.objects.create(store=store, barcode="p1", name="Pie", price=Decimal("2.45"), unit_weight_g=200,
                                 tax_category=hot)
    milk = Product.objects.create(store=store, barcode="m1", name="Milk", price=Decimal("1.10"), unit_weight_g=1000)
    payment_authorise(visit=visit)
    for product, q in ((pie, 1), (milk, 1), (pie, 1)):
        CartEvent.objects.create(visit=visit, product=product, quantity=q, confidence=0.99, source="fusion")
    Visit.objects.filter(pk=visit.pk).update(state=Visit.State.EXITED, exited_at=timezone.now())
    receipt = visit_checkout(visit=visit)
    # pies 4.90 at 10 % = 0.49; milk untaxed
    assert (receipt.tax_minor, receipt.total_minor) == (49, 490 + 110 + 49)
    assert {(ln.name, ln.tax_category, ln.tax_rate_percent) for ln in receipt.lines.all()} == {
        ("Pie", "Hot food", Decimal("10.000")), ("Milk", "", Decimal("0.000"))}
    assert visit.payment_attempts.get(kind=K.CAPTURE).amount_minor == 649


def test_live_cart_shows_the_tax_the_receipt_will_charge(settings):
    from django.utils import timezone

    from carts.models import CartEvent
    from carts.services.ledger import cart_snapshot
    from store.gates.models import Visit

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    visit = make_visit()
    hot = TaxCategory.objects.create(store=visit.store, name="Hot food", rate_percent=Decimal("10"))
    pie = Product.objects.create(store=visit.store, barcode="p1", name="Pie", price=Decimal("2.45"),
                                 unit_weight_g=200, tax_category=hot)
    CartEvent.objects.create(visit=visit, product=pie, quantity=2, confidence=0.99, source="fusion")
    Visit.objects.filter(pk=visit.pk).update(state=Visit.State.SHOPPING, entered_at=timezone.now())
    visit.refresh_from_db()
    snap = cart_snapshot(visit=visit)
    assert (snap["tax_minor"], snap["total_minor"]) == (49, 539)
