"""Input shapes of the gate API (validation only; the logic is in :mod:`store.gates.services`)."""
from __future__ import annotations

from rest_framework import serializers

#: A pass token is a short signed object (about 100 characters); anything much longer is not one of ours.
TOKEN_MAX_LENGTH = 1024


class ScanSerializer(serializers.Serializer):
    """A scan from a gate device: the text of the QR code."""

    token = serializers.CharField(max_length=TOKEN_MAX_LENGTH, trim_whitespace=True, allow_blank=False)


class StaffScanSerializer(ScanSerializer):
    """A scan from the staff scanner page: the QR text and the id of the gate the tablet stands at."""

    gate = serializers.IntegerField(min_value=1)
    direction = serializers.ChoiceField(choices=["entry", "exit"], required=False, default="entry")
