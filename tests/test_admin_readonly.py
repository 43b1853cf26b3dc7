"""The admin never lets a person add, change or delete a ledger row (written by the services only), and lets a manager
clear, but never edit, rows the services keep up to date."""
from __future__ import annotations

import pytest
from django.contrib import admin
from django.test import RequestFactory

LEDGER = ["carts.CartEvent", "carts.Cart", "vision.ShopperTrack", "gates.EntryPass", "billing.Receipt",
          "billing.PaymentAttempt", "billing.WebhookEvent", "sensors.ShelfEvent", "sensors.TagEvent"]
KEPT_BY_SERVICES = ["sensors.ControllerProblem", "sensors.SensorHealth", "sensors.RfidTag", "sensors.ReaderProblem"]


@pytest.fixture
def superuser_request(django_user_model, db):
    request = RequestFactory().get("/admin/")
    request.user = django_user_model.objects.create_superuser("root@example.com", "root@example.com", "pw-Walkout-1")
    return request


def _model_admin(label: str):
    from django.apps import apps

    model = apps.get_model(label)
    assert model in admin.site._registry, f"{label} is not in the admin"
    return admin.site._registry[model]


@pytest.mark.parametrize("label", LEDGER)
def test_ledger_rows_are_view_only(label, superuser_request):
    model_admin = _model_admin(label)
    assert model_admin.has_view_permission(superuser_request)
    assert not model_admin.has_add_permission(superuser_request)
    assert not model_admin.has_change_permission(superuser_request)
    assert not model_admin.has_delete_permission(superuser_request)


@pytest.mark.parametrize("label", KEPT_BY_SERVICES)
def test_rows_kept_by_services_can_be_cleared_not_edited(label, superuser_request):
    model_admin = _model_admin(label)
    assert not model_admin.has_add_permission(superuser_request)
    assert not model_admin.has_change_permission(superuser_request)
    assert model_admin.has_delete_permission(superuser_request)
