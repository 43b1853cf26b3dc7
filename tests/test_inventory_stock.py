"""Stock ledger: levels per product and per bin, sales from receipts, restocks, adjustments, counts, product terms
and the planogram services (store.inventory.services / selectors)."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from carts.models import CartEvent
from sensors.models import ShelfEvent
from store.billing.models import Receipt, ReceiptLine
from store.gates.models import Visit
from store.inventory import selectors
from store.inventory.models import Facing, Product, StockMovement
from store.inventory.services import (
    InventoryInputError, facing_add, facing_remove, product_update, stock_level_set, stock_record_adjustment,
    stock_record_billed_change, stock_record_restock, stock_record_sale,
)
from store.layout.models import Bin, Gondola, Shelf, Store

pytestmark = pytest.mark.django_db


def make_world(code: str = "s1", currency: str = "usd", capacity: int = 3) -> SimpleNamespace:
    """A store with two bins on one shelf (1-1-1 faces Cola, 1-1-2 faces Chips), three products, a manager (mia)
    and two shoppers (ann, bob)."""
    User = get_user_model()
    store = Store.objects.create(code=code, name=f"Store {code}", currency=currency, capacity=capacity)
    gondola = Gondola.objects.create(store=store, number=1, x=0, y=0, width_m=1, depth_m=0.5, height_m=2)
    shelf = Shelf.objects.create(gondola=gondola, number=1, z=1.0)
    bin_a = Bin.objects.create(shelf=shelf, store=store, number=1, code="1-1-1", x=0.2, y=0.1, z=1.0,
                               width_m=0.3, depth_m=0.4)
    bin_b = Bin.objects.create(shelf=shelf, store=store, number=2, code="1-1-2", x=0.5, y=0.1, z=1.0,
                               width_m=0.3, depth_m=0.4)
    cola = Product.objects.create(store=store, barcode=f"{code}-0001", name="Cola", price=Decimal("1.99"),
                                  unit_weight_g=355.0, unit_weight_sd_g=3.0, low_stock_threshold=2)
    chips = Product.objects.create(store=store, barcode=f"{code}-0002", name="Chips", price=Decimal("2.50"),
                                   unit_weight_g=150.0)
    water = Product.objects.create(store=store, barcode=f"{code}-0003", name="Water", price=Decimal("0.99"),
                                   unit_weight_g=623.0, low_stock_threshold=5)
    Facing.objects.create(bin=bin_a, product=cola)
    Facing.objects.create(bin=bin_b, product=chips)
    users = {}
    for name, staff in (("mia", True), ("ann", False), ("bob", False)):
        # No password (tests log in with force_login): hashing one costs ~0.3 s per user.
        users[name] = (User.objects.filter(username=name).first()
                       or User.objects.create(username=name, is_staff=staff))
    return SimpleNamespace(store=store, bin_a=bin_a, bin_b=bin_b, cola=cola, chips=chips, water=water,
                           mia=users["mia"], ann=users["ann"], bob=users["bob"], now=timezone.now())


def make_visit(w, *, shopper=None, state=Visit.State.SHOPPING, minutes_ago: float = 5) -> Visit:
    return Visit.objects.create(store=w.store, shopper=shopper or w.ann, state=state,
                                entered_at=timezone.now() - timedelta(minutes=minutes_ago))


def pick(w, visit: Visit, product: Product, bin_: Bin | None, quantity: int, seconds_ago: float) -> CartEvent:
    """A cart event from a shelf event on ``bin_`` (None: a manager's event with no shelf event)."""
    se = None
    if bin_ is not None:
        t = timezone.now() - timedelta(seconds=seconds_ago)
        se = ShelfEvent.objects.create(store=w.store, session="live", bin=bin_, bin_codes=[bin_.code], t_start=t,
                                       t_end=t + timedelta(seconds=0.8),
                                       delta_g=-quantity * product.unit_weight_g,
                                       hypotheses=[{"barcode": product.barcode, "quantity": quantity,
                                                    "likelihood": 0.9}])
    return CartEvent.objects.create(visit=visit, product=product, quantity=quantity, shelf_event=se,
                                    confidence=0.9, evidence={})


def make_receipt(visit: Visit, lines: list[tuple[Product, int]], issued_at=None) -> Receipt:
    total = 0
    receipt = Receipt.objects.create(visit=visit, currency=visit.store.currency, total_minor=0,
                                     issued_at=issued_at or timezone.now())
    for product, qty in lines:
        unit = int(product.price * 100)
        ReceiptLine.objects.create(receipt=receipt, product=product, barcode=product.barcode, name=product.name,
                                   quantity=qty, unit_price_minor=unit, line_total_minor=unit * qty)
        total += unit * qty
    Receipt.objects.filter(pk=receipt.pk).update(total_minor=total)
    receipt.refresh_from_db()
    return receipt


@pytest.fixture
def w() -> SimpleNamespace:
    return make_world()


# ------------------------------------------------------------------------------------------------ levels
def test_levels_are_ledger_sums_per_product_and_per_bin(w):
    stock_record_restock(product=w.cola, quantity=10, bin=w.bin_a, by="mia")
    stock_record_restock(product=w.cola, quantity=4, bin=w.bin_b, by="mia", note="overflow")
    stock_record_adjustment(product=w.cola, quantity=-1, reason="dented can", by="mia")  # no bin
    assert selectors.stock_levels()[w.cola.pk] == 13
    assert w.chips.pk not in selectors.stock_levels()
    by_bin = selectors.stock_levels_by_bin()
    assert by_bin[(w.cola.pk, w.bin_a.pk)] == 10 and by_bin[(w.cola.pk, w.bin_b.pk)] == 4
    assert by_bin[(w.cola.pk, None)] == -1
    row = selectors.products_with_stock(product_ids=[w.cola.pk])[0]
    assert row.level == 13 and not row.low and row.price_minor == 199 and row.price_display == "$1.99"
    assert [(b.bin_code, b.level, b.faces) for b in row.bins] == [
        ("1-1-1", 10, True), ("1-1-2", 4, False), ("(no bin)", -1, False)]


def test_low_stock_is_level_at_or_below_threshold(w):
    stock_record_restock(product=w.cola, quantity=3, bin=w.bin_a, by="mia")   # threshold 2: 3 is fine
    stock_record_restock(product=w.water, quantity=5, by="mia")               # threshold 5: at it → low
    low = {r.product.barcode: r.level for r in selectors.low_stock_products(store=w.store)}
    assert low == {w.water.barcode: 5, w.chips.barcode: 0}                   # chips: 0 ≤ threshold 0
    stock_record_adjustment(product=w.cola, quantity=-1, reason="broken", by="mia", bin=w.bin_a)
    assert w.cola.barcode in {r.product.barcode for r in selectors.low_stock_products(store=w.store)}


# ------------------------------------------------------------------------------------------------ sales
def test_sale_movements_follow_the_bins_the_items_came_from(w):
    visit = make_visit(w)
    pick(w, visit, w.cola, w.bin_a, 1, seconds_ago=60)
    pick(w, visit, w.cola, w.bin_a, 1, seconds_ago=50)
    pick(w, visit, w.chips, w.bin_b, 2, seconds_ago=40)
    pick(w, visit, w.chips, w.bin_b, -2, seconds_ago=30)   # put back: not on the receipt
    receipt = make_receipt(visit, [(w.cola, 2)])
    moves = stock_record_sale(receipt=receipt)
    assert [(m.product_id, m.bin_id, m.quantity, m.kind, m.reference) for m in moves] == [
        (w.cola.pk, w.bin_a.pk, -2, "sale", f"receipt:{receipt.pk}")]
    assert selectors.stock_levels_by_bin()[(w.cola.pk, w.bin_a.pk)] == -2


def test_sale_is_recorded_once_per_receipt(w):
    visit = make_visit(w)
    pick(w, visit, w.cola, w.bin_a, 1, seconds_ago=60)
    receipt = make_receipt(visit, [(w.cola, 1)])
    first = stock_record_sale(receipt=receipt)
    again = stock_record_sale(receipt=receipt)
    assert [m.pk for m in again] == [m.pk for m in first]
    assert StockMovement.objects.filter(kind="sale").count() == 1
    assert selectors.stock_levels()[w.cola.pk] == -1


def test_sale_split_over_two_bins_and_fallback_without_a_bin(w):
    visit = make_visit(w)
    pick(w, visit, w.cola, w.bin_a, 1, seconds_ago=60)
    pick(w, visit, w.cola, w.bin_b, 2, seconds_ago=50)
    # Chips: 2 taken from bin B, 1 put back on bin A (a misplacement): no bin is guessed for the sale.
    pick(w, visit, w.chips, w.bin_b, 2, seconds_ago=40)
    pick(w, visit, w.chips, w.bin_a, -1, seconds_ago=30)
    # Water: added by a manager with no shelf event.
    pick(w, visit, w.water, None, 1, seconds_ago=20)
    receipt = make_receipt(visit, [(w.cola, 3), (w.chips, 1), (w.water, 1)])
    moves = {(m.product_id, m.bin_id): m.quantity for m in stock_record_sale(receipt=receipt)}
    assert moves == {(w.cola.pk, w.bin_a.pk): -1, (w.cola.pk, w.bin_b.pk): -2, (w.chips.pk, None): -1,
                     (w.water.pk, None): -1}
    levels = selectors.stock_levels()
    assert (levels[w.cola.pk], levels[w.chips.pk], levels[w.water.pk]) == (-3, -1, -1)


# ------------------------------------------------------------------------------------------------ restock, adjust
def test_restock_and_adjustment_refuse_bad_input_and_write_nothing(w):
    other = make_world(code="s2")
    with pytest.raises(InventoryInputError, match="> 0"):
        stock_record_restock(product=w.cola, quantity=0, by="mia")
    with pytest.raises(InventoryInputError, match="whole number"):
        stock_record_restock(product=w.cola, quantity=1.5, by="mia")
    with pytest.raises(InventoryInputError, match="not in the store"):
        stock_record_restock(product=w.cola, quantity=3, bin=other.bin_a, by="mia")
    with pytest.raises(InventoryInputError, match="other than 0"):
        stock_record_adjustment(product=w.cola, quantity=0, reason="x", by="mia")
    with pytest.raises(InventoryInputError, match="say why"):
        stock_record_adjustment(product=w.cola, quantity=-2, reason="  ", by="mia")
    with pytest.raises(InventoryInputError, match="≥ 0"):
        stock_level_set(product=w.cola, counted=-1, by="mia")
    assert StockMovement.objects.count() == 0


def test_restock_reference_names_who_and_why(w):
    m = stock_record_restock(product=w.cola, quantity=6, bin=w.bin_a, by="mia", note="delivery 42")
    assert (m.kind, m.quantity, m.reference) == ("restock", 6, "restock by mia: delivery 42")


def test_count_records_the_difference_per_bin(w):
    stock_record_restock(product=w.cola, quantity=10, bin=w.bin_a, by="mia")
    stock_record_restock(product=w.cola, quantity=5, bin=w.bin_b, by="mia")
    m = stock_level_set(product=w.cola, counted=7, by="mia", bin=w.bin_a)
    assert (m.kind, m.quantity, m.bin_id) == ("adjustment", -3, w.bin_a.pk)
    assert m.reference == "count by mia: 10 → 7"
    assert stock_level_set(product=w.cola, counted=7, by="mia", bin=w.bin_a) is None
    m = stock_level_set(product=w.cola, counted=20, by="mia")  # the whole product: 12 → 20
    assert m.quantity == 8 and m.bin_id is None
    assert selectors.stock_levels()[w.cola.pk] == 20


# ------------------------------------------------------------------------------------------------ product, planogram
def test_product_update_checks_ranges(w):
    product_update(product=w.cola, price=Decimal("2.49"), unit_weight_g=350.0, unit_weight_sd_g=2.5,
                   low_stock_threshold=4)
    w.cola.refresh_from_db()
    assert (w.cola.price, w.cola.unit_weight_g, w.cola.unit_weight_sd_g, w.cola.low_stock_threshold) == (
        Decimal("2.49"), 350.0, 2.5, 4)
    bad = [dict(price=Decimal("-1")), dict(price=Decimal("1.999")), dict(price=1.5), dict(unit_weight_g=0.0),
           dict(unit_weight_g=float("nan")), dict(unit_weight_sd_g=-0.1), dict(low_stock_threshold=-1)]
    for change in bad:
        args = dict(price=Decimal("3.00"), unit_weight_g=300.0, unit_weight_sd_g=1.0, low_stock_threshold=1)
        args.update(change)
        with pytest.raises(InventoryInputError):
            product_update(product=w.cola, **args)
    w.cola.refresh_from_db()
    assert w.cola.price == Decimal("2.49")


def test_facings_add_remove_and_store_check(w):
    other = make_world(code="s2")
    facing, created = facing_add(bin=w.bin_b, product=w.cola)
    assert created and facing_add(bin=w.bin_b, product=w.cola) == (facing, False)
    with pytest.raises(InventoryInputError):
        facing_add(bin=other.bin_a, product=w.cola)
    assert facing_remove(bin=w.bin_b, product=w.cola) is True
    assert facing_remove(bin=w.bin_b, product=w.cola) is False
    plan = {pb.bin.code: [p.barcode for p, _ in pb.products] for pb in selectors.planogram(store=w.store)}
    assert plan == {"1-1-1": [w.cola.barcode], "1-1-2": [w.chips.barcode]}
    assert [pb.bin.code for pb in selectors.planogram(store=w.store, query="chips")] == ["1-1-2"]


def test_ledger_filters(w):
    stock_record_restock(product=w.cola, quantity=10, bin=w.bin_a, by="mia", note="truck")
    stock_record_adjustment(product=w.chips, quantity=-1, reason="torn", by="mia", bin=w.bin_b)
    old = stock_record_restock(product=w.water, quantity=3, by="mia")
    StockMovement.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=3))
    assert [m.product_id for m in selectors.stock_ledger(kind="restock")] == [w.cola.pk, w.water.pk]
    assert [m.product_id for m in selectors.stock_ledger(bin_code="1-1-2")] == [w.chips.pk]
    assert [m.product_id for m in selectors.stock_ledger(query="truck")] == [w.cola.pk]
    assert [m.product_id for m in selectors.stock_ledger(since=timezone.now() - timedelta(days=1))] == [
        w.chips.pk, w.cola.pk]
    assert [m.product_id for m in selectors.stock_ledger(until=timezone.now() - timedelta(days=1))] == [w.water.pk]


def test_billed_change_records_a_sale_or_a_return_once(w):
    taken = stock_record_billed_change(product=w.cola, quantity=2, reference="cart_event:7", bin=w.bin_a)
    assert (taken.kind, taken.quantity, taken.bin_id) == ("sale", -2, w.bin_a.pk)
    assert stock_record_billed_change(product=w.cola, quantity=2, reference="cart_event:7").pk == taken.pk
    back = stock_record_billed_change(product=w.cola, quantity=-1, reference="cart_event:8")
    assert (back.kind, back.quantity) == ("return", 1)
    assert selectors.stock_levels()[w.cola.pk] == -1
    for bad in (dict(quantity=0, reference="x"), dict(quantity=1, reference="")):
        with pytest.raises(InventoryInputError):
            stock_record_billed_change(product=w.cola, **bad)
