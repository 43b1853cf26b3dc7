"""Cart ledger (append-only CartEvent), the cached Cart head, the review queue, and shoppers' disputes."""
from __future__ import annotations

from django.conf import settings
from django.db import models, transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from sensors.models import ShelfEvent
from store.billing.models import PaymentAttempt, Receipt, ReceiptLine
from store.gates.models import Visit
from store.inventory.models import Product


class Cart(models.Model):
    """Cache beside the ledger: the sequence number of the latest snapshot pushed for a visit."""

    visit = models.OneToOneField(Visit, on_delete=models.CASCADE, related_name="cart")
    seq = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)


class CartEvent(models.Model):
    """+n or −n units of a product in a visit's cart. Never updated or deleted; corrections are new events."""

    class Source(models.TextChoices):
        FUSION = "fusion"
        REVIEW = "review"
        MANAGER = "manager"

    visit = models.ForeignKey(Visit, on_delete=models.PROTECT, related_name="cart_events")
    product = models.ForeignKey(Product, on_delete=models.PROTECT)
    quantity = models.IntegerField(help_text="signed units: + taken, − put back")
    shelf_event = models.ForeignKey(ShelfEvent, on_delete=models.PROTECT, null=True, blank=True)
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.FUSION)
    confidence = models.FloatField()
    evidence = models.JSONField(default=dict)
    senses = models.JSONField(
        null=True, blank=True, default=None,
        help_text="the senses that supported it, a list from carts.senses.SENSES (weight, hand, image, tag, staff); "
                  "empty: unknown (written before senses were recorded)")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "id"]


class ReviewItem(models.Model):
    """A shelf event that fusion could not attribute with confidence: a person decides.

    ``waiting``: not for people yet — a put-back fusion did attribute, of an item whose pick is itself in review
    (``follows`` that item; the decision is kept in ``resolution``). When the followed item is resolved,
    ``carts.services.review.review_resolve`` applies it if the shopper's party then holds the item (``resolved`` by
    ``fusion``), else opens it for people. A waiting item keeps its visit's checkout waiting, as an open one does.

    A person's decision made from the review console is **held** until ``undo_until`` (``settings.WALKOUT
    ["REVIEW_UNDO_S"]`` seconds): it may be undone until then (``carts.services.review.review_undo``) and keeps its
    visits' checkouts waiting as an open item does; ``carts.services.review.review_holds_release`` then bills them.
    """

    class Status(models.TextChoices):
        OPEN = "open"
        WAITING = "waiting"
        RESOLVED = "resolved"
        DISMISSED = "dismissed"

    shelf_event = models.OneToOneField(ShelfEvent, on_delete=models.PROTECT, related_name="review")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    reason = models.CharField(max_length=200)
    candidates = models.JSONField(default=list, help_text="[{visit, track_id, distance_m, score}] best first")
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.CharField(max_length=150, blank=True)
    resolution = models.JSONField(default=dict, blank=True)
    follows = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="followers",
                                help_text="the review of the pick this waiting put-back depends on")
    undo_until = models.DateTimeField(
        null=True, blank=True,
        help_text="a person's decision may be undone until then (UTC); the visits it names are not billed before "
                  "(carts.services.review.review_undo / review_holds_release); empty: final")
    #: The index of :attr:`candidates` and :attr:`resolution`: every visit either names (a candidate's ``visit``, the
    #: resolution's own ``visit``), kept by :meth:`save`. The review queue finds a visit's items through it
    #: (``carts.services.review_queue``) instead of matching the JSON text of every undecided item of the store, which
    #: at a 200-shopper exodus was PostgreSQL's costliest query, run by every checkout and cart push.
    visits_named = models.ManyToManyField(Visit, blank=True, related_name="+",
                                          help_text="the visits its candidates or resolution name (kept on save)")

    class Meta:
        ordering = ["status", "-created_at"]

    def named_visit_ids(self) -> set[int]:
        """The visit ids :attr:`candidates` (``[{"visit": id, …}]``) and :attr:`resolution` (``{"visit": id}``)
        name; malformed entries name none."""
        named = [c.get("visit") for c in (self.candidates or []) if isinstance(c, dict)]
        if isinstance(self.resolution, dict):
            named.append(self.resolution.get("visit"))
        return {v for v in named if type(v) is int}  # not True, which a set of ids would take for 1

    def save(self, *args, **kwargs) -> None:
        """Save, then bring :attr:`visits_named` in line with :attr:`candidates` and :attr:`resolution` when either
        may have changed (``update_fields`` naming neither leaves it as it is). One transaction: an item is never
        stored without its index (a worker killed between the two would leave an open review its visit's checkout
        does not see, and the event, having an item, is not decided again)."""
        with transaction.atomic():
            super().save(*args, **kwargs)
            fields = kwargs.get("update_fields")
            if fields is None or {"candidates", "resolution"} & set(fields):
                self.named_sync()

    def named_sync(self) -> None:
        """Set :attr:`visits_named` to the visits :meth:`named_visit_ids` gives that exist (a visit deleted since, a
        test's teardown, is not named)."""
        named = self.named_visit_ids()
        if named:
            named &= set(Visit.objects.filter(pk__in=named).values_list("pk", flat=True))
        self.visits_named.set(named)


@receiver(post_save, sender=ReviewItem)
def _review_item_loaded(sender, instance: ReviewItem, raw: bool = False, **kwargs) -> None:
    """A review item loaded from a fixture (``loaddata``: saved raw, without :meth:`ReviewItem.save`) gets its index
    too: a dump made before the index existed would otherwise leave every visit's open reviews unseen by its
    checkout. (A dump that holds the index sets it again after this, to the same visits.)"""
    if raw:
        instance.named_sync()


class Dispute(models.Model):
    """A shopper disputes one line of a receipt ("I didn't take this" / "wrong quantity"): a review task for the
    store (``carts.services.disputes.dispute_open`` / ``dispute_decide``). An accepted dispute refunds ``quantity``
    units of the line through ``billing.receipt_refund_line``; the billed receipt itself is never edited."""

    class Kind(models.TextChoices):
        NOT_TAKEN = "not_taken", "I didn't take this"
        WRONG_QUANTITY = "wrong_quantity", "Wrong quantity"

    class Status(models.TextChoices):
        OPEN = "open"
        ACCEPTED = "accepted"
        REJECTED = "rejected"

    receipt_line = models.ForeignKey(ReceiptLine, on_delete=models.PROTECT, related_name="disputes")
    opened_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="disputes")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    quantity = models.PositiveIntegerField(help_text="units disputed: refunded if the dispute is accepted")
    note = models.CharField(max_length=500, blank=True, help_text="the shopper's words")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(auto_now_add=True)
    decided_at = models.DateTimeField(null=True, blank=True)
    decided_by = models.CharField(max_length=150, blank=True)
    decision_note = models.CharField(max_length=500, blank=True)
    refund = models.ForeignKey(PaymentAttempt, on_delete=models.PROTECT, null=True, blank=True,
                               related_name="disputes", help_text="the refund of an accepted dispute")

    class Meta:
        ordering = ["status", "-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["receipt_line"], condition=models.Q(status="open"),
                                    name="dispute_one_open_per_line"),
        ]

    def __str__(self) -> str:
        return f"dispute {self.pk} ({self.status}) on receipt line {self.receipt_line_id}"


class StoreAlert(models.Model):
    """Something the live store worker wants people to look at: a shopper lost inside, a visit no track could be
    bound to, a source (camera, shelf controller) gone silent. Written by ``carts.runtime``; shown on the
    dashboard until resolved. ``key`` makes each alert idempotent (a restarted worker raises it once)."""

    class Kind(models.TextChoices):
        LOST = "lost", "shopper lost inside"
        UNBOUND = "unbound", "visit without a track"
        SOURCE_DOWN = "source_down", "source down"
        WORKER = "worker", "store worker"

    store = models.ForeignKey("layout.Store", on_delete=models.CASCADE, related_name="alerts")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    key = models.CharField(max_length=200, help_text="what the alert is about, unique per store and kind")
    message = models.CharField(max_length=300)
    visit = models.ForeignKey(Visit, on_delete=models.CASCADE, null=True, blank=True, related_name="alerts")
    created_at = models.DateTimeField(auto_now_add=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["store", "kind", "key"], name="store_alert_unique_key")]
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.store_id}:{self.kind}:{self.key}"


class ReplayRun(models.Model):
    """One replay of a recording in a session (``carts.tasks.replay_recording_task``): the completion record.

    ``finished_at`` is set only when the replay ran to its end, so a redelivered task tells "done" (skip) from
    "started, then its worker died" (redo: the same session and ``clock_offset_s``, so every stored time repeats and
    what the first attempt wrote is found, not written twice).
    """

    session = models.CharField(max_length=100, unique=True)
    path = models.CharField(max_length=500)
    speed = models.FloatField(null=True, blank=True, help_text="× real time; empty: as fast as possible")
    clock_offset_s = models.FloatField(help_text="seconds added to the recording's clock (fixed at the first start)")
    started_at = models.DateTimeField(help_text="first attempt (UTC)")
    attempts = models.PositiveIntegerField(default=0)
    finished_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return f"replay {self.session} ({'finished' if self.finished_at else f'attempt {self.attempts}'})"


class ReceiptEmail(models.Model):
    """The e-mail copy of one receipt (``carts.emails.receipt_email_send``): the row is the claim, made before the
    message goes to the mail backend, so a receipt is mailed at most once however often its e-mail task runs
    (redelivered, queued twice). ``sent_at``: when the backend took it (None: not sent; ``error`` says why)."""

    receipt = models.OneToOneField(Receipt, on_delete=models.CASCADE, related_name="email")
    claimed_at = models.DateTimeField(help_text="when a worker took it on (UTC)")
    sent_at = models.DateTimeField(null=True, blank=True, help_text="when the mail backend took it (UTC)")
    error = models.CharField(max_length=300, blank=True, default="",
                             help_text="why it was not sent (the backend's error, or no e-mail address)")

    def __str__(self) -> str:
        return f"e-mail of receipt {self.receipt_id}"
