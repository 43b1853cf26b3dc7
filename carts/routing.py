"""WebSocket routes (mounted by ``store.asgi`` behind AllowedHostsOriginValidator and AuthMiddlewareStack)."""
from django.urls import path

from .consumers import CartConsumer, ShopperConsumer

websocket_urlpatterns = [
    path("ws/visits/<int:visit_id>/cart/", CartConsumer.as_asgi()),
    path("ws/shopper/", ShopperConsumer.as_asgi()),
]
