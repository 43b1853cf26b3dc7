"""Inventory pages for managers, mounted at ``/manage/inventory/`` by ``carts.dashboard_urls`` (namespace
``dashboard:inventory``). See ``store.inventory.views``."""
from django.urls import path

from . import api, views

app_name = "inventory"
urlpatterns = [
    path("", views.products, name="products"),
    path("products/<int:product_id>/", views.product, name="product"),
    path("products/<int:product_id>/photos/", views.photo_add, name="photo_add"),
    path("products/<int:product_id>/photos/<int:photo_id>/", views.photo_file, name="photo"),
    path("products/<int:product_id>/photos/<int:photo_id>/delete/", views.photo_remove, name="photo_remove"),
    path("products/<int:product_id>/restock/", views.restock, name="restock"),
    path("products/<int:product_id>/adjust/", views.adjust, name="adjust"),
    path("planogram/", views.planogram, name="planogram"),
    path("planogram/<int:bin_id>/add/", views.facing_add_view, name="facing_add"),
    path("planogram/<int:bin_id>/remove/<int:product_id>/", views.facing_remove_view, name="facing_remove"),
    path("api/facings/", api.facing_change, name="api_facings"),
    path("ledger/", views.ledger, name="ledger"),
    path("csv/", views.csv_page, name="csv"),
    path("csv/catalogue.csv", views.catalogue_export, name="catalogue_export"),
    path("csv/planogram.csv", views.planogram_export, name="planogram_export"),
    path("csv/catalogue/import/", views.catalogue_import, name="catalogue_import"),
    path("csv/planogram/import/", views.planogram_import, name="planogram_import"),
]
