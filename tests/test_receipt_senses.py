"""Receipt lines name the senses that supported them (store.billing.senses): weight, hand, image, tag, staff."""
from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from carts.fusion_products import with_product_evidence
from carts.models import CartEvent
from carts.offline.replay import replay_recording
from store.accounts.demo import demo_shopper_ensure
from store.billing.senses import decision_change_senses, senses_checked, senses_union, senses_words
from carts.services.ledger import CartChange
from carts.services.review import review_senses
from store.billing.models import Receipt, ReceiptLine
from store.billing.services import ReceiptLineData
from store.gates.models import Visit
from store.recording import read_recording
from tests.test_fusion_decide import cat, decide, event, reach, still

TRUE_BARCODE = "071142008582"


# ------------------------------------------------------------------------------------------------ pure: decisions
def test_a_reaching_hand_is_the_hand_sense_a_resting_one_is_not():
    d = decide(event(["A"], -301.0), reach("a", 1.0))
    assert decision_change_senses(d) == (("weight", "hand"),)
    assert decision_change_senses(d, tags=True) == (("weight", "hand", "tag"),)
    # a hand resting by the bin, never reaching in: whatever fusion decides, its hand is not the hand sense
    rest = decide(event(["A"], -301.0), still("b", 1.0, y=-0.15), review_confidence=0.0)
    assert rest.changes and rest.candidates[0].score < 0.5
    assert decision_change_senses(rest) == (("weight",),)


def test_a_put_back_charged_to_a_party_member_names_the_hand_that_put_it_back():
    d = decide(event(["A"], +299.0), reach("b", 1.0), carts={"a": {"P": 1}, "b": {}}, party_of={"a": "a", "b": "a"})
    assert d.changes == (("a", "P", -1),)
    assert decision_change_senses(d) == (("weight", "hand"),)


def test_the_image_sense_is_there_only_when_the_recogniser_re_weighted_the_decision():
    d = decide(event(["B", "C"], -301.0), reach("a", 1.15))
    assert d.review and decision_change_senses(d) == (("weight", "hand"),)      # look-alikes: weight and hand only
    seen = with_product_evidence(d, {"Q": 0.93, "P": 0.05, "R": 0.02})
    assert seen.product_image[0] == ("Q", pytest.approx(0.93))
    assert decision_change_senses(seen) == (("weight", "hand", "image"),)
    assert seen.evidence()["product_image"][0] == ["Q", 0.93]


def test_two_shoppers_in_one_event_each_get_their_own_senses():
    hands = cat(reach("a", 1.0, t_in=1.8, t_out=2.6), reach("b", 1.1, t_in=2.4, t_out=3.2))
    d = decide(event(["A", "B"], -600.0, t0=2.0, t1=3.0), hands, review_confidence=0.0)
    senses = decision_change_senses(d)
    assert len(senses) == len(d.changes) >= 1 and all(s[0] == "weight" for s in senses)


def test_bad_senses_are_refused_with_the_reason():
    with pytest.raises(ValueError, match="unknown sense 'smell'"):
        senses_checked(["weight", "smell"])
    with pytest.raises(ValueError, match="must be a list"):
        senses_checked("weight")
    with pytest.raises(ValueError, match="unknown sense"):
        ReceiptLineData(product_id=1, barcode="b", name="n", quantity=1, unit_price_minor=1, senses=("taste",))
    assert senses_checked(["tag", "weight", "tag"]) == ("weight", "tag")
    assert senses_union([None, None]) is None and senses_union([None, ["hand"], ["weight"]]) == ("weight", "hand")
    assert senses_words(None) == "unknown" and senses_words(("weight", "hand")) == "weight · hand"
    assert review_senses(candidate={"score": 0.9}, shelf_event=None) == ("hand", "staff")
    assert review_senses(candidate={"score": 0.2, "tags": [{}]}, shelf_event=None) == ("tag", "staff")


# ------------------------------------------------------------------------------------------------ the real session
@pytest.mark.django_db
def test_benchmark1_line_was_seen_by_weight_and_hand(benchmark1_recording):
    result = replay_recording(read_recording(benchmark1_recording), shopper_factory=demo_shopper_ensure)
    visit = Visit.objects.get(session=result.session)
    (ce,) = CartEvent.objects.filter(visit=visit)
    assert ce.senses == ["weight", "hand"]
    receipt = Receipt.objects.get(visit=visit)
    (line,) = receipt.lines.all()
    assert (line.barcode, line.senses) == (TRUE_BARCODE, ["weight", "hand"])
    # the shopper sees it on the receipt and on the visit's cart page; a manager in the admin
    client = Client()
    client.force_login(visit.shopper)
    page = client.get(reverse("carts:receipt", args=[receipt.pk])).content.decode()
    assert "Seen by: weight · hand" in page
    cart = client.get(reverse("carts:visit", args=[visit.pk])).content.decode()
    assert "seen by weight · hand" in cart
    admin = get_user_model().objects.create_superuser("boss", "boss@example.com", "x")
    client.force_login(admin)
    assert "weight · hand" in client.get(reverse("admin:billing_receipt_change", args=[receipt.pk])).content.decode()
    assert "weight · hand" in client.get(reverse("admin:carts_cartevent_changelist")).content.decode()
    # a line issued before senses were recorded reads as unknown
    ReceiptLine.objects.filter(pk=line.pk).update(senses=None)
    client.force_login(visit.shopper)
    assert "Seen by: unknown" in client.get(reverse("carts:receipt", args=[receipt.pk])).content.decode()


@pytest.mark.django_db
def test_a_cart_change_with_a_bad_sense_writes_nothing():
    with pytest.raises(ValueError, match="unknown sense 'sight'"):
        CartChange(visit=Visit(), product=None, quantity=1, confidence=1.0, evidence={}, senses=("sight",))
    assert not CartEvent.objects.exists()
    assert ReceiptLineData(product_id=1, barcode="b", name="n", quantity=1, unit_price_minor=1,
                           tax_rate_percent=Decimal(0)).senses is None
