"""Shopper pages, mounted at ``/visits/`` (see ``carts.views``)."""
from django.urls import path

from . import views

app_name = "carts"
urlpatterns = [
    path("current/", views.cart_current, name="current"),
    path("<int:visit_id>/", views.cart_visit, name="visit"),
    path("receipts/", views.receipt_list, name="receipts"),
    path("receipts/<int:receipt_id>/", views.receipt_detail, name="receipt"),
    path("receipts/<int:receipt_id>/lines/<int:line_id>/dispute/", views.dispute_open_view, name="dispute_open"),
    path("disputes/", views.dispute_list, name="disputes"),
    path("disputes/<int:dispute_id>/decide/", views.dispute_decide_view, name="dispute_decide"),
]
