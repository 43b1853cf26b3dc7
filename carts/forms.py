"""Shopper and manager forms of the carts app (input shape only; the rules are in ``carts.services``)."""
from __future__ import annotations

from django import forms

from .models import Dispute


class DisputeForm(forms.Form):
    """A shopper disputes a receipt line. ``quantity_taken`` is required for "wrong quantity"."""

    kind = forms.ChoiceField(choices=Dispute.Kind.choices, widget=forms.RadioSelect, label="What is wrong?")
    quantity_taken = forms.IntegerField(required=False, min_value=0, max_value=10_000,
                                        label="How many did you really take?")
    note = forms.CharField(required=False, max_length=500, label="Anything we should know? (optional)",
                           widget=forms.Textarea(attrs={"rows": 2}))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("kind") == Dispute.Kind.WRONG_QUANTITY and data.get("quantity_taken") is None:
            self.add_error("quantity_taken", "Say how many you really took.")
        return data


class DisputeDecisionForm(forms.Form):
    """A manager accepts (refund) or rejects a dispute, with an optional note for the shopper."""

    decision = forms.ChoiceField(choices=[("accept", "Accept and refund"), ("reject", "Reject")])
    note = forms.CharField(required=False, max_length=500)
