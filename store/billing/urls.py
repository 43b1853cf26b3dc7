"""Billing routes, included at ``billing/`` by ``store/urls.py``."""
from django.urls import path

from store.billing import views

app_name = "billing"

urlpatterns = [
    path("webhooks/stripe/", views.stripe_webhook, name="stripe-webhook"),
]
