"""Parties: visits that entered together on one account are billed together (DESIGN.md "Visit states").

A guest visit points at its lead through ``Visit.party_lead``; billing charges a guest visit on the lead's card
(``store.billing.services._payer_profile``) and fusion treats the party's carts as one when a member puts back an
item another member took (``carts.fusion_options.party_holdings``).
"""
from __future__ import annotations

import logging

from django.db import transaction

from .models import Visit

log = logging.getLogger(__name__)

S = Visit.State
#: States in which a visit may join a party or lead one (before it is billed).
_OPEN = {S.ADMITTED, S.SHOPPING, S.EXITED, S.UNDER_REVIEW}


class PartyError(ValueError):
    """A party join that cannot be done (the message says why)."""


def visit_join_party(*, visit: Visit, lead: Visit) -> Visit:
    """Make ``visit`` a guest of ``lead``'s party: ``visit.party_lead = lead`` (or ``lead``'s own lead when
    ``lead`` is itself a guest, so a party always has one lead). Idempotent. Both rows are locked.

    Raises :class:`PartyError` when the visits are in different stores, ``visit`` is ``lead``, ``visit`` already
    leads other visits or belongs to another party, or either visit is no longer open (billed, closed, refused,
    payment_failed).
    """
    with transaction.atomic():
        rows = {v.pk: v for v in Visit.objects.select_for_update().filter(pk__in=[visit.pk, lead.pk])}
        if len(rows) != 2:
            raise PartyError(f"visit {visit.pk} cannot join its own party" if visit.pk == lead.pk
                             else f"visit {visit.pk} or {lead.pk} does not exist")
        guest, head = rows[visit.pk], rows[lead.pk]
        if head.party_lead_id:
            head = Visit.objects.select_for_update().get(pk=head.party_lead_id)
        if guest.store_id != head.store_id:
            raise PartyError(f"visits {guest.pk} and {head.pk} are in different stores")
        if guest.pk == head.pk:
            raise PartyError(f"visit {guest.pk} cannot join its own party")
        if guest.party_lead_id == head.pk:
            return guest
        if guest.party_lead_id is not None:
            raise PartyError(f"visit {guest.pk} is already in the party of visit {guest.party_lead_id}")
        if Visit.objects.filter(party_lead=guest).exists():
            raise PartyError(f"visit {guest.pk} leads a party; it cannot join another")
        for v in (guest, head):
            if v.state not in _OPEN:
                raise PartyError(f"visit {v.pk} is {v.state}; only open visits form a party")
        guest.party_lead = head
        guest.save(update_fields=["party_lead"])
    log.info("visit %s joined the party of visit %s", guest.pk, head.pk)
    visit.party_lead_id = guest.party_lead_id
    return guest
