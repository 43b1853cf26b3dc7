"""WebSocket routes (mounted by ``store.asgi`` behind AllowedHostsOriginValidator and AuthMiddlewareStack)."""
from django.urls import path

from .consumers import CartConsumer, ShopperConsumer
from .dashboard_consumers import DashboardConsumer

websocket_urlpatterns = [
    path("ws/visits/<int:visit_id>/cart/", CartConsumer.as_asgi()),
    path("ws/shopper/", ShopperConsumer.as_asgi()),
    path("ws/dashboard/", DashboardConsumer.as_asgi()),  # managers only (carts.dashboard_consumers)
]
