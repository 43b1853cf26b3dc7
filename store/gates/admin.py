"""Gates admin: gates (API key never shown, only set or rotated), entry passes and visits (read-only records)."""
from __future__ import annotations

from django.contrib import admin, messages
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from store.admin_mixins import ReadOnlyMixin

from .models import EntryPass, Gate, Visit, VisitTransition
from .services import VisitStateError, gate_key_new, gate_key_rotate, visit_transition


def _keys_page(request: HttpRequest, keys: list[tuple[Gate, str]]) -> HttpResponse:
    """The one page that shows new gate API keys (not cached, never put in a message cookie)."""
    response = TemplateResponse(request, "gates/admin_api_keys.html", {
        **admin.site.each_context(request), "keys": keys, "title": "Gate API keys",
        "back_url": reverse("admin:gates_gate_changelist"),
    })
    response["Cache-Control"] = "no-store"
    return response


@admin.register(Gate)
class GateAdmin(admin.ModelAdmin):
    """Entry and exit gates of a store, with their API keys and entry/exit zones."""
    list_display = ("name", "store", "active", "emulated")
    list_filter = ("store", "active", "emulated")
    search_fields = ("name", "store__code", "store__name")
    exclude = ("api_key_hash",)
    readonly_fields = ("emulated",)  # set by manage.py emulate_store for its own gate only
    actions = ("rotate_api_key",)

    def save_model(self, request: HttpRequest, obj: Gate, form, change: bool) -> None:
        if not change:
            api_key, obj.api_key_hash = gate_key_new()
            request._walkout_new_gate_key = api_key
        super().save_model(request, obj, form, change)

    def response_add(self, request: HttpRequest, obj: Gate, post_url_continue=None) -> HttpResponse:
        api_key = getattr(request, "_walkout_new_gate_key", None)
        if api_key is None:
            return super().response_add(request, obj, post_url_continue)
        return _keys_page(request, [(obj, api_key)])

    @admin.action(description="Rotate the API key of the selected gates (old keys stop working)",
                  permissions=["change"])
    def rotate_api_key(self, request: HttpRequest, queryset) -> HttpResponse:
        keys = [(gate, gate_key_rotate(gate=gate)) for gate in queryset.select_related("store")]
        return _keys_page(request, keys)


@admin.register(EntryPass)
class EntryPassAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """QR entry passes issued to shoppers (single-use tokens): read-only."""
    list_display = ("id", "shopper", "store", "issued_at", "expires_at", "used_at", "used_gate")
    list_filter = ("store", ("used_at", admin.EmptyFieldListFilter))
    search_fields = ("shopper__email", "nonce")
    date_hierarchy = "issued_at"
    list_select_related = ("shopper", "store", "used_gate__store")


class VisitTransitionInline(admin.TabularInline):


    """The state changes of a visit (admitted, bound to a track, exited, billed…) in order."""
    model = VisitTransition
    fields = ("at", "from_state", "to_state", "reason")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Visit)
class VisitAdmin(admin.ModelAdmin):
    """Visits are opened by the gate and moved by the services; the admin can only send one to review."""

    list_display = ("id", "shopper", "store", "state", "entered_at", "exited_at", "billed_at")
    list_filter = ("state", "store")
    search_fields = ("shopper__email", "track_id")
    date_hierarchy = "entered_at"
    list_select_related = ("shopper", "store")
    readonly_fields = ("store", "shopper", "entry_pass", "party_lead", "state", "session", "track_id",
                       "entered_at", "exited_at", "billed_at")
    inlines = (VisitTransitionInline,)
    actions = ("send_to_review",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    @admin.action(description="Send the selected visits to review (hold billing)", permissions=["change"])
    def send_to_review(self, request: HttpRequest, queryset) -> None:
        moved, refused = 0, []
        for visit in queryset:
            try:
                visit_transition(visit=visit, to_state=Visit.State.UNDER_REVIEW,
                                 reason=f"sent to review by {request.user.get_username()} in the admin")
                moved += 1
            except VisitStateError as exc:
                refused.append(str(exc))
        if moved:
            self.message_user(request, f"{moved} visit(s) sent to review.", messages.SUCCESS)
        for text in refused:
            self.message_user(request, text, messages.WARNING)
