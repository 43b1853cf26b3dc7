"""Shopper pages, mounted at ``/visits/`` (see ``carts.views``)."""
from django.urls import path

from . import views

app_name = "carts"
urlpatterns = [
    path("current/", views.cart_current, name="current"),
    path("<int:visit_id>/", views.cart_visit, name="visit"),
    path("receipts/", views.receipt_list, name="receipts"),
    path("receipts/<int:receipt_id>/", views.receipt_detail, name="receipt"),
]
