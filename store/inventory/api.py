"""The planogram's drag-to-assign API for the manager's planogram page (``/manage/inventory/api/facings/``).

``POST`` JSON ``{"action": "add" | "move" | "remove", "product": <id>, "bin": <id>, "from_bin": <id>}`` (``move``:
off ``from_bin`` onto ``bin``; ``remove``: off ``bin``). Active staff only (DRF session authentication, so the CSRF
token is checked: the page sends it as ``X-CSRFToken``); anyone else gets 403 ``{"reason": "forbidden"}``.
Answers 200 with the new contents of each bin touched, ``{"bins": [{"id", "code", "products": [{"id", "name",
"barcode", "level"}]}], "message"}``; 400 ``{"reason": "bad_request", "message"}`` for a malformed request, an
unknown product or bin (of another store too), or a move whose product is not on ``from_bin`` (nothing written).
"""
from __future__ import annotations

from django.db import transaction
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import BasePermission
from rest_framework.response import Response

from store.dashboard_events import dashboard_notify
from store.layout.models import Bin

from .models import Facing, Product
from .selectors import stock_levels_by_bin
from .services import facing_add, facing_remove


class IsManager(BasePermission):
    """An active staff user (the dashboard's rule)."""

    message = "managers only"

    def has_permission(self, request, view) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and user.is_staff)


class FacingChange(serializers.Serializer):


    """One planogram change in the inventory API: a bin code and the product (barcode) that now faces it."""
    action = serializers.ChoiceField(choices=["add", "move", "remove"])
    product = serializers.IntegerField(min_value=1)
    bin = serializers.IntegerField(min_value=1)
    from_bin = serializers.IntegerField(min_value=1, required=False)

    def validate(self, data):
        if data["action"] == "move" and not data.get("from_bin"):
            raise serializers.ValidationError("a move needs from_bin, the bin the product leaves")
        return data


def bin_contents(bins: list[Bin]) -> list[dict]:
    """``[{"id", "code", "products": [{"id", "name", "barcode", "level"}]}]`` for ``bins`` (levels: units on
    that bin, from the ledger), products by name."""
    facings = list(Facing.objects.filter(bin__in=bins).select_related("product").order_by("product__name"))
    levels = stock_levels_by_bin(product_ids=list({f.product_id for f in facings}))
    out = []
    for b in bins:
        out.append({"id": b.pk, "code": b.code, "products": [
            {"id": f.product_id, "name": f.product.name, "barcode": f.product.barcode,
             "level": levels.get((f.product_id, b.pk), 0)} for f in facings if f.bin_id == b.pk]})
    return out


@api_view(["POST"])
@permission_classes([IsManager])
def facing_change(request):
    """Add, move or remove one facing (module docstring)."""
    form = FacingChange(data=request.data if isinstance(request.data, dict) else {})
    form.is_valid(raise_exception=True)
    data = form.validated_data
    target = Bin.objects.filter(pk=data["bin"]).select_related("store").first()
    if target is None:
        raise ValidationError({"bin": f"no bin {data['bin']}"})
    product = Product.objects.filter(pk=data["product"], store_id=target.store_id).first()
    if product is None:
        raise ValidationError({"product": f"no product {data['product']} in store {target.store.code}"})
    touched = [target]
    with transaction.atomic():
        if data["action"] == "add":
            _, created = facing_add(bin=target, product=product)
            message = f"{product.name} {'added to' if created else 'was already on'} {target.code}."
        elif data["action"] == "remove":
            removed = facing_remove(bin=target, product=product)
            message = f"{product.name} {'taken off' if removed else 'was not on'} {target.code}."
        else:
            source = Bin.objects.filter(pk=data["from_bin"], store_id=target.store_id).first()
            if source is None:
                raise ValidationError({"from_bin": f"no bin {data['from_bin']} in store {target.store.code}"})
            if source.pk != target.pk:
                if not facing_remove(bin=source, product=product):
                    raise ValidationError({"from_bin": f"{product.name} is not on {source.code}"})
                facing_add(bin=target, product=product)
                touched.append(source)
            message = f"{product.name} moved from {source.code} to {target.code}."
    dashboard_notify(reason="planogram", store_id=target.store_id)
    return Response({"bins": bin_contents(touched), "message": message})
