"""Billing admin: receipts with their lines, the ledger and webhook events are visible and cannot be edited."""
from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from store.billing.models import PaymentAttempt, Receipt, ReceiptLine, WebhookEvent
from store.gates.models import Visit
from store.inventory.models import Product
from store.layout.models import Store

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client):
    admin = get_user_model().objects.create_superuser(username="boss", email="boss@example.com", password="x")
    client.force_login(admin)
    return client


@pytest.fixture
def billed():
    store = Store.objects.create(code="corner", name="Corner shop")
    user = get_user_model().objects.create_user(username="ann@example.com", email="ann@example.com")
    visit = Visit.objects.create(store=store, shopper=user, entered_at=timezone.now())
    product = Product.objects.create(store=store, barcode="0001", name="Green tea", price="2.50", unit_weight_g=100)
    receipt = Receipt.objects.create(visit=visit, currency="usd", total_minor=500, issued_at=timezone.now())
    ReceiptLine.objects.create(receipt=receipt, product=product, barcode="0001", name="Green tea", quantity=2,
                               unit_price_minor=250, line_total_minor=500)
    attempt = PaymentAttempt.objects.create(visit=visit, kind="capture", provider="dummy", amount_minor=500,
                                            currency="usd", idempotency_key=f"capture:{visit.pk}",
                                            provider_ref="dummy_pi_1", intent_ref="dummy_pi_1", status="succeeded")
    event = WebhookEvent.objects.create(provider="stripe", event_id="evt_1", type="charge.refunded", payload={},
                                        outcome="ledger already records 0 refunded")
    return receipt, attempt, event


def test_admin_lists_searches_and_shows_read_only(admin_client, billed):
    receipt, attempt, event = billed
    for model, obj, needle in ((Receipt, receipt, "Green tea"), (PaymentAttempt, attempt, "dummy_pi_1"),
                               (WebhookEvent, event, "evt_1")):
        name = model._meta.model_name
        listing = admin_client.get(reverse(f"admin:billing_{name}_changelist"), {"q": needle})
        assert listing.status_code == 200 and f"/{obj.pk}/change/" in listing.content.decode()
        detail = admin_client.get(reverse(f"admin:billing_{name}_change", args=[obj.pk]))
        assert detail.status_code == 200 and needle in detail.content.decode()
        assert 'name="_save"' not in detail.content.decode()  # no save button: read-only
        assert admin_client.get(reverse(f"admin:billing_{name}_add")).status_code == 403
    assert admin_client.post(reverse("admin:billing_paymentattempt_delete", args=[attempt.pk]),
                             {"post": "yes"}).status_code == 403
    assert PaymentAttempt.objects.filter(pk=attempt.pk).exists()
