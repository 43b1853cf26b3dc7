"""The receipt's e-mail copy: a Celery task of its own queued when the checkout commits (``carts.emails``), sent at
most once per receipt however often the task runs (a redelivered message, a second queueing), a failed send
recorded (``carts.ReceiptEmail.error``) and never undoing the billing."""
from __future__ import annotations

import pytest

from carts.emails import receipt_email_task
from carts.models import ReceiptEmail
from store.gates.models import Visit
from tests.test_billing_corrections import _billed_visit, shop  # noqa: F401  (the fixture)

pytestmark = pytest.mark.django_db


def copies(mailoutbox, receipt):
    return [m for m in mailoutbox if f"Receipt {receipt.pk}" in m.body]


def test_the_checkout_mails_the_receipt_once_however_often_its_task_runs(shop, mailoutbox,  # noqa: F811
                                                                        django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        visit = _billed_visit(shop)
    receipt = visit.receipt
    assert [m.to for m in copies(mailoutbox, receipt)] == [["ann@walkout.test"]]
    email = ReceiptEmail.objects.get(receipt=receipt)
    assert email.sent_at is not None and email.error == ""
    assert receipt_email_task.apply(args=[receipt.pk]).get() is False  # delivered again: nothing sent
    assert len(copies(mailoutbox, receipt)) == 1


def test_a_failed_send_is_recorded_the_receipt_stays_billed_and_no_retry_mails_it(shop, mailoutbox,  # noqa: F811
                                                                                   monkeypatch,
                                                                                   django_capture_on_commit_callbacks):
    from django.core.mail import EmailMultiAlternatives

    def refused(self, fail_silently=False):
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(EmailMultiAlternatives, "send", refused)
    with django_capture_on_commit_callbacks(execute=True):
        visit = _billed_visit(shop)
    assert Visit.objects.get(pk=visit.pk).state == Visit.State.BILLED
    email = ReceiptEmail.objects.get(receipt=visit.receipt)
    assert email.sent_at is None and "Connection refused" in email.error
    monkeypatch.undo()
    assert receipt_email_task.apply(args=[visit.receipt.pk]).get() is False
    assert copies(mailoutbox, visit.receipt) == []
