"""What a fresh-user trial found about offline runs (``replay``, ``evaluate``): they must never bind a real
shopper's account (a hold on a real card, a visit in the real shopper's cart page), and the emulated store's stored
times must stay in order at any ``--speed``."""
from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from carts.replay import DEMO_SHOPPER, demo_shopper_ensure, is_throwaway_shopper, throwaway_shopper

pytestmark = pytest.mark.django_db


def test_evaluate_replays_on_throwaway_accounts_never_the_demo_shopper(benchmark1_recording):
    from store.gates.models import Visit

    demo_shopper_ensure(DEMO_SHOPPER)  # the real demo account exists (``manage.py demo`` made it)
    call_command("evaluate", str(benchmark1_recording), replay=True, stdout=io.StringIO())
    visits = list(Visit.objects.select_related("shopper"))
    assert visits
    assert not Visit.objects.filter(shopper__username=DEMO_SHOPPER).exists()
    assert all(is_throwaway_shopper(v.shopper.username) for v in visits), [v.shopper.username for v in visits]


def test_replay_without_shopper_uses_throwaway_accounts_and_needs_no_create_shoppers(benchmark1_recording):
    from store.gates.models import Visit

    demo_shopper_ensure(DEMO_SHOPPER)
    call_command("replay", str(benchmark1_recording), stdout=io.StringIO(), stderr=io.StringIO())
    assert not Visit.objects.filter(shopper__username=DEMO_SHOPPER).exists()
    assert Visit.objects.filter(shopper__username=throwaway_shopper(Visit.objects.first().track_id)).exists()


def test_throwaway_names():
    assert is_throwaway_shopper("replay+7@walkout.test")
    assert not is_throwaway_shopper(DEMO_SHOPPER) and not is_throwaway_shopper("shopper+7@walkout.test")
    assert not is_throwaway_shopper("replay+7@walkout.test.evil.com")
