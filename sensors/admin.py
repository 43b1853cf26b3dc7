"""Admin for shelf events (read-only: one writer, ``sensors``), shelf controllers, RFID readers with their antennas,
item tags and tag events."""
from __future__ import annotations

from django.contrib import admin

from store.admin_mixins import ReadOnlyMixin, WrittenByServicesMixin

from .models import ControllerProblem, SensorHealth, ShelfController, ShelfEvent


@admin.register(ShelfEvent)
class ShelfEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Shelf events (weight changes on bins/plates): read-only; written by ingestion."""
    list_display = ("id", "t_start", "t_end", "store", "session", "bin", "delta_g", "kind", "misplaced")
    list_filter = ("store", "session", "kind", "misplaced")
    search_fields = ("bin__code",)
    list_select_related = ("store", "bin")
    date_hierarchy = "t_start"
    ordering = ("-t_start", "-id")


@admin.register(ShelfController)
class ShelfControllerAdmin(admin.ModelAdmin):
    """Shelf controllers: create them with ``manage.py create_controller`` (prints the API key once); here the
    clock offset and the active flag can be changed; the key hash and bins are read only."""

    list_display = ("name", "store", "active", "emulated", "rate_hz", "clock_offset_s", "messages", "samples",
                    "last_seen_at")
    list_filter = ("store", "active", "emulated")
    readonly_fields = ("store", "name", "api_key_hash", "bin_codes", "rate_hz", "messages", "samples",
                       "last_seen_at", "created_at", "emulated")

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(ControllerProblem)
class ControllerProblemAdmin(WrittenByServicesMixin, admin.ModelAdmin):
    """Rejected or damaged shelf-controller messages, counted per reason (written by ingestion)."""
    list_display = ("controller", "reason", "count", "samples_lost", "last_at", "last_message")
    list_filter = ("reason", "controller__store")


@admin.register(SensorHealth)
class SensorHealthAdmin(WrittenByServicesMixin, admin.ModelAdmin):
    """Per-controller and per-plate health (last sample, noise, stuck load cells), written by ingestion."""
    list_display = ("bin", "status", "evidence", "noise_g", "since", "checked_at")
    list_filter = ("status",)
    list_select_related = ("bin",)


# ------------------------------------------------------------------------------------------------ RFID
from .models import ReaderProblem, RfidAntenna, RfidReader, RfidTag, TagEvent  # noqa: E402


class RfidAntennaInline(admin.TabularInline):


    """The antennas of an RFID reader: where each one reads (shelf bin or exit lane)."""
    model = RfidAntenna
    extra = 0
    fields = ("port", "kind", "bin", "lane")
    raw_id_fields = ("bin",)


@admin.register(RfidReader)
class RfidReaderAdmin(admin.ModelAdmin):
    """RFID readers: create them with ``manage.py create_reader`` (prints the API key once); here antennas, the clock
    offset and the active flag can be changed; the key hash and counters are read only."""

    list_display = ("name", "store", "active", "clock_offset_s", "messages", "reads", "last_seen_at")
    list_filter = ("store", "active")
    readonly_fields = ("store", "name", "api_key_hash", "messages", "reads", "last_seen_at", "created_at")
    inlines = [RfidAntennaInline]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(RfidTag)
class RfidTagAdmin(WrittenByServicesMixin, admin.ModelAdmin):
    """Item tags: read only (written by ingestion and by billing when a shopper leaves with one)."""

    list_display = ("gtin", "serial", "product", "store", "last_where", "last_seen_at", "sold_visit", "charged")
    list_filter = ("store", "charged")
    search_fields = ("gtin", "serial", "epc", "product__name")
    list_select_related = ("store", "product")
    raw_id_fields = ("product", "sold_visit")


@admin.register(TagEvent)
class TagEventAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """RFID tag reads turned into events (tag lost on a shelf, read again, seen at an exit): read-only."""
    list_display = ("t", "kind", "tag", "where", "rssi_dbm", "on_shelf", "reader")
    list_filter = ("store", "kind", "on_shelf")
    search_fields = ("tag__gtin", "tag__serial", "where")
    list_select_related = ("tag", "reader")
    date_hierarchy = "t"


@admin.register(ReaderProblem)
class ReaderProblemAdmin(WrittenByServicesMixin, admin.ModelAdmin):
    """Rejected RFID reader messages, counted per reason (written by ingestion)."""
    list_display = ("reader", "reason", "count", "reads_lost", "last_at", "last_message")
    list_filter = ("reason", "reader__store")
