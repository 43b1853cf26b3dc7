"""Shopper pages (/visits/…), the manager dashboard (/manage/…), review decisions and the cart admin."""
from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django.db.models import Sum
from django.shortcuts import resolve_url
from django.test import Client
from django.utils import timezone

from carts.models import CartEvent, ReviewItem
from carts.services.review import review_resolve
from carts.services.review_queue import ReviewError, review_open_for
from sensors.models import ShelfEvent
from store.accounts.models import ShopperProfile
from store.billing.models import PaymentAttempt, Receipt, ReceiptLine
from store.billing.provider_dummy import DummyProvider
from store.billing.services import payment_authorise
from store.gates.models import Visit, VisitTransition
from store.inventory.models import Product
from store.layout.models import Bin, Gondola, Shelf, Store

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def plain_settings(settings):
    settings.PAYMENT_PROVIDER = "dummy"
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture
def w() -> SimpleNamespace:
    User = get_user_model()
    store = Store.objects.create(code="s1", name="Store One", currency="usd")
    gondola = Gondola.objects.create(store=store, number=1, x=0, y=0, width_m=1, depth_m=0.5, height_m=2)
    shelf = Shelf.objects.create(gondola=gondola, number=2, z=1.0)
    bin_ = Bin.objects.create(shelf=shelf, store=store, number=3, code="1-2-3", x=0.2, y=0.1, z=1.0,
                              width_m=0.3, depth_m=0.4)
    cola = Product.objects.create(store=store, barcode="0001", name="Cola", price=Decimal("1.99"),
                                  unit_weight_g=355.0)
    chips = Product.objects.create(store=store, barcode="0002", name="Chips", price=Decimal("2.50"),
                                   unit_weight_g=150.0)
    ann = User.objects.create_user("ann", password="pw-ann-123456")
    bob = User.objects.create_user("bob", password="pw-bob-123456")
    mia = User.objects.create_user("mia", password="pw-mia-123456", is_staff=True)
    now = timezone.now()
    visit = Visit.objects.create(store=store, shopper=ann, state=Visit.State.SHOPPING,
                                 entered_at=now - timedelta(minutes=5))
    VisitTransition.objects.create(visit=visit, from_state="", to_state="admitted", at=visit.entered_at,
                                   reason="gate g1")
    VisitTransition.objects.create(visit=visit, from_state="admitted", to_state="shopping", at=visit.entered_at,
                                   reason="bound to track t7")
    return SimpleNamespace(store=store, bin=bin_, cola=cola, chips=chips, ann=ann, bob=bob, mia=mia, visit=visit,
                           now=now)


def client_for(user=None, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    if user is not None:
        client.force_login(user)
    return client


def hyp(barcode: str, quantity: int, likelihood: float) -> list[dict]:
    """A one-hypothesis list as sensors writes it (quantity: signed units taken from the shelf)."""
    return [{"barcode": barcode, "quantity": quantity, "likelihood": likelihood}]


def shelf_event(w, *, delta_g: float, seconds_ago: float, hypotheses: list[dict]) -> ShelfEvent:
    t = w.now - timedelta(seconds=seconds_ago)
    return ShelfEvent.objects.create(store=w.store, session="live", bin=w.bin, bin_codes=[w.bin.code], t_start=t,
                                     t_end=t + timedelta(seconds=0.8), delta_g=delta_g, hypotheses=hypotheses)


def cart_event(w, *, product, quantity: int, se: ShelfEvent | None, confidence: float = 0.9,
               visit=None) -> CartEvent:
    return CartEvent.objects.create(visit=visit or w.visit, product=product, quantity=quantity, shelf_event=se,
                                    confidence=confidence, evidence={"hand_distance_m": 0.12})


def billed_receipt(w) -> Receipt:
    """Ann's visit billed: 2 × Cola (picked in two events) and a bag of chips picked and put back."""
    se1 = shelf_event(w, delta_g=-355, seconds_ago=120, hypotheses=hyp("0001", 1, 0.9))
    se2 = shelf_event(w, delta_g=-356, seconds_ago=90, hypotheses=hyp("0001", 1, 0.8))
    se3 = shelf_event(w, delta_g=-150, seconds_ago=80, hypotheses=hyp("0002", 1, 0.7))
    se4 = shelf_event(w, delta_g=151, seconds_ago=70, hypotheses=hyp("0002", -1, 0.7))
    cart_event(w, product=w.cola, quantity=1, se=se1, confidence=0.91)
    cart_event(w, product=w.cola, quantity=1, se=se2, confidence=0.83)
    cart_event(w, product=w.chips, quantity=1, se=se3)
    cart_event(w, product=w.chips, quantity=-1, se=se4)
    Visit.objects.filter(pk=w.visit.pk).update(state=Visit.State.BILLED, exited_at=w.now, billed_at=w.now)
    receipt = Receipt.objects.create(visit=w.visit, currency="usd", total_minor=398, issued_at=w.now)
    ReceiptLine.objects.create(receipt=receipt, product=w.cola, barcode="0001", name="Cola", quantity=2,
                               unit_price_minor=199, line_total_minor=398)
    PaymentAttempt.objects.create(visit=w.visit, kind="authorise", provider="dummy", amount_minor=5000,
                                  currency="usd", idempotency_key=f"authorise:{w.visit.pk}", status="succeeded")
    PaymentAttempt.objects.create(visit=w.visit, kind="capture", provider="dummy", amount_minor=398, currency="usd",
                                  idempotency_key=f"capture:{w.visit.pk}", status="succeeded")
    return receipt


# ------------------------------------------------------------------------------------------------ who may see what
@pytest.mark.parametrize("path", ["/visits/current/", "/visits/receipts/", "/visits/{visit}/",
                                  "/visits/receipts/{receipt}/", "/manage/", "/manage/visits/{visit}/"])
def test_anonymous_is_sent_to_login(w, path, settings):
    receipt = billed_receipt(w)
    url = path.format(visit=w.visit.pk, receipt=receipt.pk)
    response = client_for(None).get(url)
    assert response.status_code == 302
    assert response.url.startswith(resolve_url(settings.LOGIN_URL) + "?next=")


def test_another_shopper_gets_404_on_my_receipt_and_my_cart(w):
    receipt = billed_receipt(w)
    bob = client_for(w.bob)
    assert bob.get(f"/visits/receipts/{receipt.pk}/").status_code == 404
    assert bob.get(f"/visits/{w.visit.pk}/").status_code == 404
    assert bob.get("/visits/receipts/").context["receipts"] == []
    # …and exactly the same answer as for a receipt or visit that does not exist.
    assert bob.get(f"/visits/receipts/{receipt.pk + 99}/").status_code == 404
    # Bob's own current page is the waiting page, not Ann's cart.
    Visit.objects.filter(pk=w.visit.pk).update(state=Visit.State.SHOPPING)
    page = bob.get("/visits/current/")
    assert page.status_code == 200 and page.context["snapshot"] is None
    assert b"Waiting at the gate" in page.content


def test_staff_sees_the_dashboard_and_a_shopper_does_not(w):
    assert client_for(w.mia).get("/manage/").status_code == 200
    assert client_for(w.ann).get("/manage/").status_code == 403
    assert client_for(w.ann).get(f"/manage/visits/{w.visit.pk}/").status_code == 403


# ------------------------------------------------------------------------------------------------ shopper pages
def test_current_cart_page_shows_lines_total_review_notice_and_state(w):
    se = shelf_event(w, delta_g=-355, seconds_ago=30, hypotheses=hyp("0001", 1, 0.9))
    cart_event(w, product=w.cola, quantity=2, se=se)
    unsure = shelf_event(w, delta_g=-150, seconds_ago=10, hypotheses=hyp("0002", 1, 0.5))
    ReviewItem.objects.create(shelf_event=unsure, reason="two shoppers at the bin",
                              candidates=[{"visit": w.visit.pk, "track_id": "t7", "distance_m": 0.2, "score": 0.5}])
    response = client_for(w.ann).get("/visits/current/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "Cola" in html and "$1.99" in html and "$3.98" in html
    assert "not sure about <span id=\"cart-review-n\">1 item</span> — we'll check" in html
    assert "shopping" in html
    data = response.context["page_data"]
    assert data["snapshot"]["visit"] == w.visit.pk and data["snapshot"]["total_minor"] == 398
    assert data["snapshot"]["under_review"] == 1


def test_current_page_waits_when_the_visit_is_over(w):
    Visit.objects.filter(pk=w.visit.pk).update(state=Visit.State.BILLED)
    response = client_for(w.ann).get("/visits/current/")
    assert response.status_code == 200
    assert response.context["page_data"]["snapshot"] is None
    assert b"Waiting at the gate" in response.content
    # how the last visit ended is still said (issue #15: "No visit in progress" with no link to the receipt)
    assert response.context["last_trip"]["stage"] == "charged"
    assert b"Your last visit: No charge" in response.content


def test_receipt_page_explains_every_line(w):
    receipt = billed_receipt(w)
    ann = client_for(w.ann)
    listing = ann.get("/visits/receipts/")
    assert [r.id for r in listing.context["receipts"]] == [receipt.pk]
    assert listing.context["receipts"][0].payment.code == "paid"
    response = ann.get(f"/visits/receipts/{receipt.pk}/")
    assert response.status_code == 200
    view = response.context["receipt"]
    (line,) = view.lines
    assert line.quantity == 2 and line.explained and [e.confidence for e in line.events] == [0.91, 0.83]
    assert {e.bin_code for e in line.events} == {"1-2-3"}
    assert [e.quantity for _, e in view.other_events] == [1, -1]  # chips: picked up, put back
    html = response.content.decode()
    assert "$3.98" in html and "Paid" in html and "1-2-3" in html and "91%" in html and "83%" in html


def test_receipt_line_not_backed_by_events_is_flagged(w):
    receipt = billed_receipt(w)
    ReceiptLine.objects.create(receipt=receipt, product=w.chips, barcode="0002", name="Chips", quantity=1,
                               unit_price_minor=250, line_total_minor=250)
    view = client_for(w.ann).get(f"/visits/receipts/{receipt.pk}/").context["receipt"]
    chips = next(line for line in view.lines if line.barcode == "0002")
    assert not chips.explained and chips.events_quantity == 0


# ------------------------------------------------------------------------------------------------ dashboard
def test_dashboard_lists_visits_shelf_events_and_reviews(w):
    se = shelf_event(w, delta_g=-355, seconds_ago=30, hypotheses=hyp("0001", 1, 0.9))
    cart_event(w, product=w.cola, quantity=1, se=se)
    unsure = shelf_event(w, delta_g=-150, seconds_ago=10, hypotheses=hyp("0002", 1, 0.6))
    item = ReviewItem.objects.create(shelf_event=unsure, reason="two shoppers at the bin", candidates=[
        {"visit": w.visit.pk, "track_id": "t7", "distance_m": 0.21, "score": 0.55}])
    response = client_for(w.mia).get("/manage/")
    ctx = response.context
    (row,) = ctx["visits"]
    assert (row.id, row.shopper, row.state, row.items, row.total_minor, row.open_reviews) == (
        w.visit.pk, "ann", "shopping", 1, 199, 1)
    by_id = {e.id: e for e in ctx["shelf_events"]}
    assert by_id[se.pk].given_to == [{"visit": w.visit.pk, "quantity": 1, "source": "fusion"}]
    assert by_id[se.pk].best["name"] == "Cola"
    assert by_id[unsure.pk].review == "open"
    (review,) = ctx["reviews"]
    assert review.id == item.pk and review.candidates[0]["shopper"] == "ann"
    html = response.content.decode()
    assert f'href="/manage/reviews/{item.pk}/"' in html and "Chips" in html  # the queue links to the console
    console = client_for(w.mia).get(f"/manage/reviews/{item.pk}/").content.decode()
    assert f'action="/manage/reviews/{item.pk}/resolve/"' not in console  # nothing is posted before a confirmation
    assert "21 cm" in console and "Chips" in console and "ann" in console
    confirm = client_for(w.mia).get(f"/manage/reviews/{item.pk}/?answer=A:0002:1").content.decode()
    assert f'action="/manage/reviews/{item.pk}/resolve/"' in confirm and "csrfmiddlewaretoken" in confirm
    assert "Charge ann $2.50 for one Chips?" in confirm


def test_visit_detail_page_shows_transitions_events_payments_receipt(w):
    receipt = billed_receipt(w)
    response = client_for(w.mia).get(f"/manage/visits/{w.visit.pk}/")
    assert response.status_code == 200
    d = response.context["d"]
    assert [t.to_state for t in d.transitions] == ["admitted", "shopping"]
    assert len(d.events) == 4 and [a.kind for a in d.attempts] == ["authorise", "capture"]
    assert d.receipt.id == receipt.pk and d.receipt.lines[0].explained
    assert client_for(w.mia).get(f"/manage/visits/{w.visit.pk + 99}/").status_code == 404


# ------------------------------------------------------------------------------------------------ review decisions
def _open_review(w, visits, *, hyp=("0002", 1)) -> ReviewItem:
    se = shelf_event(w, delta_g=-150, seconds_ago=10 + ReviewItem.objects.count(),
                     hypotheses=[{"barcode": hyp[0], "quantity": hyp[1], "likelihood": 0.6}])
    return ReviewItem.objects.create(shelf_event=se, reason="ambiguous", candidates=[
        {"visit": v.pk, "track_id": f"t{v.pk}", "distance_m": 0.3, "score": 0.5} for v in visits])


def test_review_resolve_form_needs_csrf_and_adds_the_cart_event(w):
    item = _open_review(w, [w.visit])
    mia = client_for(w.mia, csrf=True)
    form = {"visit": w.visit.pk, "barcode": "0002", "quantity": 1}
    assert mia.post(f"/manage/reviews/{item.pk}/resolve/", form).status_code == 403  # no CSRF token
    assert not CartEvent.objects.exists()
    mia.get("/manage/")
    token = mia.cookies["csrftoken"].value
    response = mia.post(f"/manage/reviews/{item.pk}/resolve/", {**form, "csrfmiddlewaretoken": token})
    assert response.status_code == 302
    (event,) = CartEvent.objects.all()
    assert (event.visit_id, event.product_id, event.quantity, event.source, event.shelf_event_id) == (
        w.visit.pk, w.chips.pk, 1, "review", item.shelf_event_id)
    assert event.evidence["review"] == item.pk and event.evidence["by"] == "mia"
    item.refresh_from_db()
    assert item.status == "resolved" and item.resolved_by == "mia" and item.resolution["cart_event"] == event.pk
    # A decided item cannot be decided twice.
    again = mia.post(f"/manage/reviews/{item.pk}/resolve/", {**form, "csrfmiddlewaretoken": token}, follow=True)
    assert CartEvent.objects.count() == 1
    assert any("already resolved" in str(m) for m in again.context["messages"])


def test_a_shopper_cannot_resolve_reviews(w):
    item = _open_review(w, [w.visit])
    response = client_for(w.ann).post(f"/manage/reviews/{item.pk}/resolve/",
                                      {"visit": w.visit.pk, "barcode": "0002", "quantity": 1})
    assert response.status_code == 403
    assert not CartEvent.objects.exists()
    assert ReviewItem.objects.get(pk=item.pk).status == "open"


def test_dismiss_charges_nobody(w):
    item = _open_review(w, [w.visit])
    assert client_for(w.mia).post(f"/manage/reviews/{item.pk}/resolve/", {}).status_code == 302
    item.refresh_from_db()
    assert item.status == "dismissed" and not CartEvent.objects.exists()


def test_checkout_runs_when_the_last_open_review_of_an_under_review_visit_closes(w, monkeypatch):
    from carts.services import review

    Visit.objects.filter(pk=w.visit.pk).update(state=Visit.State.UNDER_REVIEW)
    other = Visit.objects.create(store=w.store, shopper=w.bob, state=Visit.State.UNDER_REVIEW, entered_at=w.now)
    first = _open_review(w, [w.visit, other])
    second = _open_review(w, [w.visit], hyp=("0001", 1))
    calls = []
    monkeypatch.setattr(review, "visit_checkout", lambda *, visit, at=None: calls.append(visit.pk) or None)

    out = review.review_resolve(item=first, visit_id=w.visit.pk, barcode="0002", quantity=1, by="mia")
    assert out.cart_event.visit_id == w.visit.pk
    assert calls == [other.pk]  # Bob's visit waited only for this item; Ann's still has `second` open
    out = review.review_resolve(item=second, visit_id=w.visit.pk, barcode="0001", quantity=1, by="mia")
    assert calls == [other.pk, w.visit.pk]
    assert list(out.checkouts) == [w.visit.pk]


@pytest.mark.parametrize("case", ["closed", "other_store", "unknown_barcode", "zero", "put_back_too_many"])
def test_refused_review_decisions_write_nothing(w, case):
    item = _open_review(w, [w.visit])
    kwargs = {"visit_id": w.visit.pk, "barcode": "0002", "quantity": 1}
    if case == "closed":  # (a billed visit is corrected by refund or charge: the review's own tests)
        Visit.objects.filter(pk=w.visit.pk).update(state=Visit.State.CLOSED)
    elif case == "other_store":
        store2 = Store.objects.create(code="s2", name="Store Two")
        kwargs["visit_id"] = Visit.objects.create(store=store2, shopper=w.bob, entered_at=w.now).pk
    elif case == "unknown_barcode":
        kwargs["barcode"] = "9999"
    elif case == "zero":
        kwargs["quantity"] = 0
    else:
        kwargs["quantity"] = -1
    with pytest.raises(ReviewError):
        review_resolve(item=item, by="mia", **kwargs)
    assert not CartEvent.objects.exists()
    assert ReviewItem.objects.get(pk=item.pk).status == "open"


# ------------------------------------------------------------------------------------------------ admin
@pytest.mark.parametrize("model", ["carts/cartevent", "carts/cart", "carts/reviewitem", "sensors/shelfevent",
                                   "vision/shoppertrack"])
def test_admin_lists_are_read_only(w, model):
    root = get_user_model().objects.create_superuser("root", password="pw-root-123456")
    billed_receipt(w)
    client = client_for(root)
    assert client.get(f"/admin/{model}/").status_code == 200
    assert client.get(f"/admin/{model}/add/").status_code == 403


def test_resolving_the_last_review_bills_the_visit_end_to_end(w):
    """review_resolve → visit_checkout → billing.receipt_issue with the dummy payment provider (no mocks)."""
    provider = DummyProvider()
    customer = provider.create_customer(email="ann@example.com", idempotency_key="test:cus:ann")
    card = provider.attach_card(customer_ref=customer.customer_ref, card_token="4242424242424242",
                                idempotency_key="test:card:ann")
    ShopperProfile.objects.create(user=w.ann, provider="dummy", customer_ref=customer.customer_ref,
                                  payment_method_ref=card.payment_method_ref)
    payment_authorise(visit=w.visit)
    cart_event(w, product=w.cola, quantity=1, se=None)
    Visit.objects.filter(pk=w.visit.pk).update(state=Visit.State.UNDER_REVIEW)
    item = _open_review(w, [w.visit])

    out = review_resolve(item=item, visit_id=w.visit.pk, barcode="0002", quantity=1, by="mia")
    receipt = out.checkouts[w.visit.pk]
    assert receipt is not None and receipt.total_minor == 199 + 250
    assert Visit.objects.get(pk=w.visit.pk).state == Visit.State.BILLED
    assert sorted((ln.barcode, ln.quantity) for ln in receipt.lines.all()) == [("0001", 1), ("0002", 1)]
    captured = PaymentAttempt.objects.filter(visit=w.visit, kind="capture", status="succeeded").get()
    assert captured.amount_minor == 449


def test_admin_dismiss_action_goes_through_the_service(w):
    root = get_user_model().objects.create_superuser("root", password="pw-root-123456")
    item = _open_review(w, [w.visit])
    response = client_for(root).post("/admin/carts/reviewitem/", {"action": "dismiss", "_selected_action": [item.pk]})
    assert response.status_code == 302
    item.refresh_from_db()
    assert item.status == "dismissed" and item.resolved_by == "root" and not CartEvent.objects.exists()
    # its page shows the candidates, never the queue's index of them as a list of every visit to pick from
    page = client_for(root).get(f"/admin/carts/reviewitem/{item.pk}/change/")
    assert page.status_code == 200 and b"visits_named" not in page.content and b"Candidates" in page.content


def _waiting_put_back(w, follows: ReviewItem, visit: Visit, barcode: str = "0002", seconds_ago: float = 2) -> ReviewItem:
    se = shelf_event(w, delta_g=+150, seconds_ago=seconds_ago, hypotheses=[{"barcode": barcode, "quantity": -1,
                                                                  "likelihood": 0.97}])
    return ReviewItem.objects.create(shelf_event=se, status=ReviewItem.Status.WAITING, follows=follows,
                                     reason="its pick awaits review", candidates=[
                                         {"visit": visit.pk, "track_id": f"t{visit.pk}", "distance_m": 0.05}],
                                     resolution={"visit": visit.pk, "barcode": barcode, "quantity": -1,
                                                 "confidence": 0.93, "evidence": {"decision": {"reason": "x"}}})


def test_a_put_back_waiting_for_its_picks_review_applies_when_the_pick_is_given_to_its_shopper(w, monkeypatch):
    from carts.services import review

    bob_visit = Visit.objects.create(store=w.store, shopper=w.bob, state=Visit.State.SHOPPING, entered_at=w.now)
    pick = _open_review(w, [w.visit, bob_visit])              # who took the chips: Ann or Bob?
    waiting = _waiting_put_back(w, pick, w.visit)              # Ann put chips back meanwhile
    Visit.objects.filter(pk=w.visit.pk).update(state=Visit.State.UNDER_REVIEW)  # and left
    w.visit.refresh_from_db()
    assert waiting in review_open_for(visit=w.visit)  # her checkout waits for the waiting item too
    response = client_for(w.mia).get("/manage/")
    (row,) = response.context["reviews"]  # the waiting put-back is not for people; the pick shows it waits
    assert row.id == pick.pk and row.waiting == 1
    assert "1 put-back of this item waits for this decision" in response.content.decode()
    calls = []
    monkeypatch.setattr(review, "visit_checkout", lambda *, visit, at=None: calls.append(visit.pk) or None)

    out = review.review_resolve(item=pick, visit_id=w.visit.pk, barcode="0002", quantity=1, by="mia")
    waiting.refresh_from_db()
    assert (waiting.status, waiting.resolved_by) == ("resolved", "fusion")
    put_back = CartEvent.objects.get(pk=waiting.resolution["cart_event"])
    assert (put_back.visit_id, put_back.quantity, put_back.source) == (w.visit.pk, -1, "fusion")
    assert put_back.evidence["follows_review"] == pick.pk
    assert w.visit.cart_events.filter(product=w.chips).aggregate(s=Sum("quantity"))["s"] == 0
    assert calls == [w.visit.pk] and list(out.checkouts) == [w.visit.pk]  # nothing left: Ann is billed


def test_a_waiting_put_back_opens_for_people_when_the_pick_went_to_someone_else(w):
    bob_visit = Visit.objects.create(store=w.store, shopper=w.bob, state=Visit.State.SHOPPING, entered_at=w.now)
    pick = _open_review(w, [w.visit, bob_visit])
    waiting = _waiting_put_back(w, pick, w.visit)
    review_resolve(item=pick, visit_id=bob_visit.pk, barcode="0002", quantity=1, by="mia")
    waiting.refresh_from_db()
    assert waiting.status == "open" and f"review {pick.pk}" in waiting.reason
    assert not CartEvent.objects.filter(shelf_event=waiting.shelf_event).exists()
    assert waiting in review_open_for(visit=w.visit)


def test_waiting_put_backs_settle_in_the_order_they_were_decided(w):
    """Ann took 3 chips (in review); fusion gave her three put-backs while the pick waited: 1, 1, then 2 (really one
    of the 2 was Bob's, who also took one). The review gives her the 3: the put-backs apply oldest first, as the
    offline evaluation applies them, so the first two take 2 back and the last, which her cart cannot cover, opens
    for people. Newest first, the 2 applied and the first 1 opened: the live receipts differed from the offline
    run's (bench-live, 50 shoppers in one room)."""
    pick = _open_review(w, [w.visit])
    first, second = _waiting_put_back(w, pick, w.visit, seconds_ago=4), _waiting_put_back(w, pick, w.visit, seconds_ago=3)
    last = _waiting_put_back(w, pick, w.visit)
    last.resolution = {**last.resolution, "quantity": -2}
    last.save(update_fields=["resolution"])
    review_resolve(item=pick, visit_id=w.visit.pk, barcode="0002", quantity=3, by="mia")
    for item in (first, second, last):
        item.refresh_from_db()
    assert [first.status, second.status, last.status] == ["resolved", "resolved", "open"]
    assert w.visit.cart_events.filter(product=w.chips).aggregate(s=Sum("quantity"))["s"] == 1
    assert last in review_open_for(visit=w.visit)


def test_a_visit_named_only_by_a_waiting_put_back_is_checked_out_once_it_settles(w, monkeypatch):
    from carts.services import review

    bob_visit = Visit.objects.create(store=w.store, shopper=w.bob, state=Visit.State.SHOPPING, entered_at=w.now)
    pick = _open_review(w, [w.visit])                          # Ann's pick of chips, in review
    waiting = _waiting_put_back(w, pick, w.visit)              # Ann puts chips back; Bob stood beside her
    waiting.candidates = waiting.candidates + [{"visit": bob_visit.pk, "track_id": "tb", "distance_m": 0.3}]
    waiting.save(update_fields=["candidates"])
    Visit.objects.filter(pk=bob_visit.pk).update(state=Visit.State.UNDER_REVIEW)  # Bob left: he waits for it
    bob_visit.refresh_from_db()
    assert review_open_for(visit=bob_visit) == [waiting]
    calls = []
    monkeypatch.setattr(review, "visit_checkout", lambda *, visit, at=None: calls.append(visit.pk) or None)
    review.review_resolve(item=pick, visit_id=w.visit.pk, barcode="0002", quantity=1, by="mia")
    assert bob_visit.pk in calls  # the settled put-back released Bob's checkout too
