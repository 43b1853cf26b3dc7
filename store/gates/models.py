"""Entry gates, entry passes and visits (DESIGN.md "Visit states")."""
from __future__ import annotations

from django.conf import settings
from django.db import models

from store.layout.models import Store


class Gate(models.Model):
    """A gate device (QR scanner or a tablet at the door). It authenticates with ``api_key``."""

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="gates")
    name = models.CharField(max_length=64)
    api_key_hash = models.CharField(max_length=128, help_text="SHA-256 hex of the gate's API key")
    active = models.BooleanField(default=True)
    emulated = models.BooleanField(default=False, help_text=(
        "registered by manage.py emulate_store for its own playback, never a real device: the emulator uses and "
        "re-keys only devices so marked, never one a manager registered"))

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "name"], name="gate_unique_name")]

    def __str__(self) -> str:
        return f"{self.store.code}:{self.name}"


class EntryPass(models.Model):
    """A single-use entry pass. The QR code holds a signed token naming ``nonce``; the nonce is consumed once."""

    shopper = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="entry_passes")
    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="entry_passes")
    nonce = models.CharField(max_length=64, unique=True)
    issued_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)
    used_gate = models.ForeignKey(Gate, on_delete=models.SET_NULL, null=True, blank=True)
    guests = models.PositiveSmallIntegerField(
        default=0, help_text="party members the shopper said they bring (\"bring guests\"), capped at the gate")
    guests_admitted = models.PositiveSmallIntegerField(
        default=0, help_text="guests admitted so far on this pass (each a visit whose party_lead is the holder's)")

    class Meta:
        verbose_name_plural = "entry passes"


class Visit(models.Model):
    """One shopper's time in the store, from the gate to the receipt."""

    class State(models.TextChoices):
        ADMITTED = "admitted"
        SHOPPING = "shopping"
        EXITED = "exited"
        BILLED = "billed"
        CLOSED = "closed"
        REFUSED = "refused"
        PAYMENT_FAILED = "payment_failed"
        UNDER_REVIEW = "under_review"

    store = models.ForeignKey(Store, on_delete=models.CASCADE, related_name="visits")
    shopper = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="visits")
    entry_pass = models.OneToOneField(EntryPass, on_delete=models.SET_NULL, null=True, blank=True)
    party_lead = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="party_members",
        help_text="guest visits point at the visit whose account pays",
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.ADMITTED)
    session = models.CharField(max_length=100, blank=True, help_text="live, or the recording replayed")
    track_id = models.CharField(max_length=64, blank=True, help_text="bound shopper track id (vision)")
    entered_at = models.DateTimeField()
    exited_at = models.DateTimeField(null=True, blank=True)
    billed_at = models.DateTimeField(null=True, blank=True)
    checkout_due_at = models.DateTimeField(
        null=True, blank=True, db_index=True,
        help_text="wall-clock time (UTC) from which an exited visit is due for checkout; set with the exit, in the "
                  "same transaction, so a visit whose checkout task was lost is found by visits_stuck_sweep",
    )

    class Meta:
        ordering = ["-entered_at", "-id"]

    def __str__(self) -> str:
        return f"visit {self.pk} ({self.state})"


class VisitTransition(models.Model):
    """Append-only log of a visit's state changes."""

    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=16)
    to_state = models.CharField(max_length=16)
    at = models.DateTimeField()
    reason = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["at", "id"]
