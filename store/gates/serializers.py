"""Input shapes of the gate API (validation only; the logic is in :mod:`store.gates.services`)."""
from __future__ import annotations

from rest_framework import serializers

#: A pass token is a short signed object (about 100 characters); anything much longer is not one of ours.
TOKEN_MAX_LENGTH = 1024


#: How far a gate device's own clock may differ from the server's (seconds): a scanner whose clock is further off
#: is refused, since the store loop binds the scan to the track seen at the gate at that time.
SCAN_CLOCK_SKEW_S = 86_400.0


class ScanSerializer(serializers.Serializer):
    """A scan from a gate device: the text of the QR code and, optionally, ``t``: when it was scanned on the
    device's clock (s UTC; default: when the server receives it)."""

    token = serializers.CharField(max_length=TOKEN_MAX_LENGTH, trim_whitespace=True, allow_blank=False)
    t = serializers.FloatField(required=False, min_value=0.0)

    def validate_t(self, value: float) -> float:
        import math
        import time

        if not math.isfinite(value) or abs(value - time.time()) > SCAN_CLOCK_SKEW_S:
            raise serializers.ValidationError(f"the scan time must be within {SCAN_CLOCK_SKEW_S:.0f} s of the "
                                              "server's clock")
        return value


class StaffScanSerializer(ScanSerializer):
    """A scan from the staff scanner page: the QR text and the id of the gate the tablet stands at."""

    gate = serializers.IntegerField(min_value=1)
    direction = serializers.ChoiceField(choices=["entry", "exit"], required=False, default="entry")
