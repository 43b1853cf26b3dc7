"""Emails to shoppers: the receipt copy (password-reset mail is Django's, see ``views.PasswordResetView``).

Sent through Django's configured backend (in the embedded profile the file backend writes it to var/mail/, see
``settings.EMAIL_FILE_PATH``). A failed send is logged and never undoes what caused it (a billed receipt stays billed).
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import transaction
from django.template.loader import render_to_string

from store.billing.models import Receipt
from store.billing.money import money_display

from .models import Dispute
from .selectors import receipt_detail

log = logging.getLogger(__name__)


def receipt_email_send(*, receipt_id: int) -> bool:
    """Email receipt ``receipt_id`` to the shopper who pays for it (the party lead's account for a guest visit):
    text and HTML, each line with quantity, unit price and total (minor units formatted by
    ``store.billing.money.money_display``), the payment state and a link to the receipt page when
    ``settings.WALKOUT["SITE_URL"]`` is set. Returns True when handed to the backend; False when the receipt is gone,
    the account has no email (e.g. deleted) or the backend failed (logged)."""
    receipt = Receipt.objects.select_related("visit__store", "visit__shopper", "visit__party_lead__shopper").filter(
        pk=receipt_id).first()
    if receipt is None:
        log.warning("receipt email: receipt %s does not exist", receipt_id)
        return False
    visit = receipt.visit
    payer = visit.party_lead.shopper if visit.party_lead_id else visit.shopper
    if not payer.email or not payer.is_active:
        log.info("receipt email: receipt %s not sent (the account has no email)", receipt_id)
        return False
    site = str(settings.WALKOUT.get("SITE_URL", "")).rstrip("/")
    context = {"receipt": receipt_detail(receipt=receipt), "guest": bool(visit.party_lead_id),
               "url": f"{site}/visits/receipts/{receipt.pk}/" if site else ""}
    subject = f"Your Walkout receipt from {visit.store.name}: {context['receipt'].total_display}"
    message = EmailMultiAlternatives(subject=subject, body=render_to_string("billing/receipt_email.txt", context),
                                     to=[payer.email])
    message.attach_alternative(render_to_string("billing/receipt_email.html", context), "text/html")
    try:
        message.send(fail_silently=False)
    except Exception:  # the mail server's failure must not undo the billing; logged for the operators
        log.exception("receipt email: sending receipt %s failed", receipt_id)
        return False
    log.info("receipt email: receipt %s sent to user %s", receipt_id, payer.pk)
    return True


def receipt_email_schedule(*, receipt) -> None:
    """Send the receipt's email copy (:func:`receipt_email_send`) once the current transaction commits (at once
    outside a transaction). Called at the end of ``carts.services.checkout.visit_checkout``."""
    receipt_id = receipt.pk
    transaction.on_commit(lambda: receipt_email_send(receipt_id=receipt_id))


def dispute_decision_email_send(*, dispute_id: int) -> bool:
    """Tell the shopper who opened dispute ``dispute_id`` what the store decided (accepted: the refund; rejected:
    the store's note), with the receipt's link when ``settings.WALKOUT["SITE_URL"]`` is set. Returns True when
    handed to the backend."""
    dispute = Dispute.objects.select_related("receipt_line__receipt__visit__store", "opened_by", "refund").filter(
        pk=dispute_id).first()
    if dispute is None or not dispute.opened_by.email or not dispute.opened_by.is_active:
        return False
    line = dispute.receipt_line
    receipt = line.receipt
    site = str(settings.WALKOUT.get("SITE_URL", "")).rstrip("/")
    url = f"{site}/visits/receipts/{receipt.pk}/" if site else ""
    if dispute.status == "accepted":
        amount = money_display(dispute.refund.amount_minor if dispute.refund else 0, receipt.currency)
        subject = f"Your dispute is accepted: {amount} refunded"
        body = (f"We checked “{line.name}” on receipt {receipt.pk} from {receipt.visit.store.name}: you were right. "
                f"{amount} ({dispute.quantity} unit{'s' if dispute.quantity != 1 else ''}) goes back to your card; "
                "it shows on your statement within a few days.")
    else:
        subject = f"Your dispute of “{line.name}”: the line stands"
        body = (f"We checked “{line.name}” on receipt {receipt.pk} from {receipt.visit.store.name} and the line "
                "stands.")
    if dispute.decision_note:
        body += f"\n\nThe store's note: “{dispute.decision_note}”"
    body += (f"\n\nYour receipt: {url}" if url else "\n\nYour receipt is under Receipts in the Walkout app.")
    body += "\n\nIf you still disagree, reply to this e-mail.\n\nWalkout\n"
    try:
        EmailMultiAlternatives(subject=subject, body=body, to=[dispute.opened_by.email]).send(fail_silently=False)
    except Exception:
        log.exception("dispute email: sending the decision of dispute %s failed", dispute_id)
        return False
    log.info("dispute email: decision of dispute %s sent to user %s", dispute_id, dispute.opened_by_id)
    return True


def dispute_decision_email_schedule(*, dispute) -> None:
    """Send the decision of ``dispute`` (:func:`dispute_decision_email_send`) once the transaction commits."""
    dispute_id = dispute.pk
    transaction.on_commit(lambda: dispute_decision_email_send(dispute_id=dispute_id))
