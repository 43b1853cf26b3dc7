"""Emails to shoppers: the receipt copy (password-reset mail is Django's, see ``views.PasswordResetView``).

Sent through Django's configured backend (in the embedded profile the file backend writes it to var/mail/, see
``settings.EMAIL_FILE_PATH``). A failed send is logged and never undoes what caused it (a billed receipt stays billed).
The receipt copy goes out from a Celery task of its own (:func:`receipt_email_task`), queued when the checkout
commits, so a slow or unreachable mail server never holds up a billing worker's next checkout.
"""
from __future__ import annotations

import logging

from celery import shared_task
from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.utils import timezone

from store.billing.models import Receipt
from store.billing.money import money_display
from store.celery import task_send

from .models import Dispute, ReceiptEmail
from .selectors import receipt_detail

log = logging.getLogger(__name__)


def receipt_email_send(*, receipt_id: int) -> bool:
    """Email receipt ``receipt_id`` to the shopper who pays for it (the party lead's account for a guest visit):
    text and HTML, each line with quantity, unit price and total (minor units formatted by
    ``store.billing.money.money_display``), the payment state and a link to the receipt page when
    ``settings.WALKOUT["SITE_URL"]`` is set. At most once per receipt: a :class:`~carts.models.ReceiptEmail` row is
    claimed before sending, and a receipt that has one (mailed, failed or being mailed) is not mailed again. Returns
    True when handed to the backend; False when the receipt is gone, was claimed before, the account has no email
    (e.g. deleted) or the backend failed (logged, and kept in ``ReceiptEmail.error``)."""
    receipt = Receipt.objects.select_related("visit__store", "visit__shopper", "visit__party_lead__shopper").filter(
        pk=receipt_id).first()
    if receipt is None:
        log.warning("receipt email: receipt %s does not exist", receipt_id)
        return False
    try:
        with transaction.atomic():
            claim = ReceiptEmail.objects.create(receipt=receipt, claimed_at=timezone.now())
    except IntegrityError:  # another delivery of the task (or a second queueing) has it: at most one e-mail
        log.info("receipt email: receipt %s was claimed by an earlier delivery (sent, failed or being sent: its "
                 "ReceiptEmail row says which); not sent again", receipt_id)
        return False
    visit = receipt.visit
    payer = visit.party_lead.shopper if visit.party_lead_id else visit.shopper
    if not payer.email or not payer.is_active:
        log.info("receipt email: receipt %s not sent (the account has no email)", receipt_id)
        ReceiptEmail.objects.filter(pk=claim.pk).update(error="the account has no e-mail address")
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
    except Exception as exc:  # the mail server's failure must not undo the billing; logged for the operators
        log.exception("receipt email: sending receipt %s failed", receipt_id)
        ReceiptEmail.objects.filter(pk=claim.pk).update(error=f"{type(exc).__name__}: {exc}"[:300])
        return False
    ReceiptEmail.objects.filter(pk=claim.pk).update(sent_at=timezone.now())
    log.info("receipt email: receipt %s sent to user %s", receipt_id, payer.pk)
    return True


@shared_task(name="carts.emails.receipt_email_task", acks_late=True, time_limit=120)
def receipt_email_task(receipt_id: int) -> bool:
    """Celery task: :func:`receipt_email_send` (at most once per receipt, so a redelivered message mails nothing
    twice). Returns whether the backend took the message."""
    return receipt_email_send(receipt_id=receipt_id)


def receipt_email_schedule(*, receipt) -> None:
    """Queue the receipt's email copy (:func:`receipt_email_task`) once the current transaction commits (at once
    outside a transaction); in the embedded profile (eager tasks) it is sent there and then. A broker that does not
    take it is logged (the receipt is billed either way; the shopper's receipt page has it). Called at the end of
    ``carts.services.checkout.visit_checkout``."""
    receipt_id = receipt.pk

    def queue() -> None:
        try:
            task_send(receipt_email_task, args=[receipt_id], retry=True,
                      retry_policy={"max_retries": 1, "interval_start": 0.2})
        except Exception as exc:  # kombu OperationalError, redis ConnectionError, OSError…: not queued
            log.error("receipt email: the e-mail of receipt %s could not be queued (%s: %s)", receipt_id,
                      type(exc).__name__, exc)

    transaction.on_commit(queue)


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
