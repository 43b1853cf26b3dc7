"""The billing services against a stateful fake Stripe server (``localstripe``, PyPI), offline.

The server runs in a subprocess on 127.0.0.1; the services reach it through ``settings.STRIPE_API_BASE`` and the
real ``get_provider()``. Cards are created the way Stripe.js would (a PaymentMethod from a test card number), then
saved, held, captured, refunded and released through our code; the server's own state is checked afterwards.
"""
from __future__ import annotations

import socket
import subprocess
import sys
import time

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from store.accounts.models import ShopperProfile
from store.accounts.payment import CardRejected, shopper_card_attach
from store.billing.models import PaymentAttempt
from store.billing.services import (
    PaymentDeclined,
    ReceiptLineData,
    payment_authorise,
    receipt_issue,
    receipt_refund_line,
)
from store.gates.models import Visit
from store.inventory.models import Product
from store.layout.models import Store

pytest.importorskip("localstripe")
stripe = pytest.importorskip("stripe")

pytestmark = pytest.mark.django_db

K = PaymentAttempt.Kind
S = PaymentAttempt.Status
API_KEY = "sk_test_walkout_localstripe"

# localstripe pickles its state to /tmp after every write; a test server keeps it in memory only.
_SERVER = (
    "import sys, localstripe.resources as r; r.Store.dump_to_disk = lambda self: None\n"
    "from aiohttp import web\nfrom localstripe.server import app\n"
    "web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None)\n"
)


@pytest.fixture(scope="module")
def localstripe_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"localstripe did not start: {proc.stderr.read().decode()[-2000:]}") from None
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def stripe_settings(settings, localstripe_url):
    settings.PAYMENT_PROVIDER = "stripe"
    settings.STRIPE_SECRET_KEY = API_KEY
    settings.STRIPE_API_BASE = localstripe_url
    settings.WALKOUT = {**settings.WALKOUT, "AUTHORISE_AMOUNT_MINOR": 5000}
    return stripe.StripeClient(API_KEY, base_addresses={"api": localstripe_url})


def browser_payment_method(client, number: str) -> str:
    """What Stripe.js does in the shopper's browser: the card number goes to Stripe, a ``pm_…`` comes back."""
    pm = client.v1.payment_methods.create(params={
        "type": "card", "card": {"number": number, "exp_month": 12, "exp_year": 2034, "cvc": "123"}})
    return pm.id


def shopper_visit(client, *, email: str, number: str) -> Visit:
    store, _ = Store.objects.get_or_create(code="corner", defaults={"name": "Corner shop", "currency": "usd"})
    user = get_user_model().objects.create_user(username=email, email=email)
    shopper_card_attach(user=user, card_token=browser_payment_method(client, number))
    return Visit.objects.create(store=store, shopper=user, entered_at=timezone.now())


def lines(store: Store, spec: list[tuple[int, int]]) -> list[ReceiptLineData]:
    out = []
    for i, (quantity, unit) in enumerate(spec):
        product = Product.objects.create(store=store, barcode=f"LS{i}", name=f"Item {i}", price="1.00",
                                         unit_weight_g=100)
        out.append(ReceiptLineData(product_id=product.pk, barcode=product.barcode, name=product.name,
                                   quantity=quantity, unit_price_minor=unit))
    return out


def test_hold_capture_beyond_the_hold_and_refund(stripe_settings):
    client = stripe_settings
    visit = shopper_visit(client, email="ann@example.com", number="4242424242424242")
    profile = ShopperProfile.objects.get(user=visit.shopper)
    assert (profile.provider, profile.card_brand, profile.card_last4) == ("stripe", "visa", "4242")
    assert profile.customer_ref.startswith("cus_") and profile.payment_method_ref.startswith("pm_")

    hold = payment_authorise(visit=visit)
    pi = client.v1.payment_intents.retrieve(hold.intent_ref)
    assert (pi.status, pi.amount, pi.capture_method, pi.customer) == (
        "requires_capture", 5000, "manual", profile.customer_ref)

    receipt = receipt_issue(visit=visit, lines=lines(visit.store, [(2, 2500), (1, 700)]))
    assert receipt.total_minor == 5700
    capture, extra = visit.payment_attempts.filter(kind__in=[K.CAPTURE, K.CHARGE]).order_by("id")
    assert (capture.kind, capture.status, capture.amount_minor) == (K.CAPTURE, S.SUCCEEDED, 5000)
    assert (extra.kind, extra.status, extra.amount_minor) == (K.CHARGE, S.SUCCEEDED, 700)
    assert client.v1.payment_intents.retrieve(hold.intent_ref).status == "succeeded"
    extra_pi = client.v1.payment_intents.retrieve(extra.intent_ref)
    assert (extra_pi.status, extra_pi.amount, extra_pi.metadata["beyond_hold_of"]) == (
        "succeeded", 700, hold.intent_ref)

    same_lines = [ReceiptLineData(product_id=ln.product_id, barcode=ln.barcode, name=ln.name, quantity=ln.quantity,
                                  unit_price_minor=ln.unit_price_minor) for ln in receipt.lines.all()]
    assert receipt_issue(visit=visit, lines=same_lines).pk == receipt.pk
    assert visit.payment_attempts.count() == 3  # nothing collected twice

    refund = receipt_refund_line(receipt_line=receipt.lines.first(), quantity=1, reason="damaged packaging")
    assert (refund.status, refund.amount_minor, refund.intent_ref) == (S.SUCCEEDED, 2500, hold.intent_ref)
    stored = client.v1.refunds.retrieve(refund.provider_ref)
    assert (stored.amount, stored.status, stored.metadata["reason"]) == (2500, "succeeded", "damaged packaging")


def test_empty_cart_releases_the_hold(stripe_settings):
    client = stripe_settings
    visit = shopper_visit(client, email="bo@example.com", number="5555555555554444")
    hold = payment_authorise(visit=visit)
    receipt_issue(visit=visit, lines=[])
    assert client.v1.payment_intents.retrieve(hold.intent_ref).status == "canceled"
    assert visit.payment_attempts.get(kind=K.CANCEL).status == S.SUCCEEDED


def test_declines_at_the_card_and_at_the_gate(stripe_settings):
    client = stripe_settings
    user = get_user_model().objects.create_user(username="cy@example.com", email="cy@example.com")
    with pytest.raises(CardRejected) as exc:
        shopper_card_attach(user=user, card_token=browser_payment_method(client, "4000000000000002"))
    assert exc.value.code == "card_declined"
    assert ShopperProfile.objects.get(user=user).payment_method_ref == ""

    visit = shopper_visit(client, email="di@example.com", number="4000000000000341")  # saves, then declines
    with pytest.raises(PaymentDeclined) as exc:
        payment_authorise(visit=visit)
    assert exc.value.code == "card_declined"
    assert visit.payment_attempts.get().status == S.FAILED
