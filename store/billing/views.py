"""Billing views: the Stripe webhook endpoint (thin: the work is in :mod:`store.billing.webhooks`)."""
from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from store.billing.webhooks import webhook_receive


@csrf_exempt  # Stripe cannot send a CSRF token; the request is authenticated by its signature instead.
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    """POST from Stripe: 200 when applied or replayed, 400 when rejected (reason in the body and the log)."""
    outcome = webhook_receive(payload=request.body, signature=request.headers.get("Stripe-Signature", ""))
    return JsonResponse({"status": outcome.status, "reason": outcome.reason, "event": outcome.event_id},
                        status=outcome.http_status)
