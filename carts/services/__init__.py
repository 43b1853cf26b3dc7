"""The carts app's service layer: every write of a cart, a review decision, a checkout or a dispute goes through a
function here (DESIGN.md: "one writer per fact"; other apps and the offline tools call these, never the models).

One module per concept; import from the module that holds the name:

- ``ledger``: cart events appended (``CartChange``, ``cart_apply``), the cart's lines, the snapshot contract and
  its live push (``cart_snapshot``, ``cart_publish``, ``cart_publish_batch``, the channel groups).
- ``review_queue``: which review items still hold a visit's checkout (``review_open_for``, ``review_undecided_for``,
  ``review_undecided_counts``) and ``ReviewError``.
- ``review``: a person's review decisions, their undo window and release (``review_resolve``, ``review_undo``,
  ``review_holds_release``), the senses a decision records (``review_senses``).
- ``corrections``: a billed visit's money corrected by a later review decision (charge or refund).
- ``checkout``: the visit's cart → receipt → capture at exit (``visit_checkout``), RFID exit tags on the cart.
- ``disputes``: a shopper disputes a receipt line, a manager decides (``dispute_open``, ``dispute_decide``).

The names other apps call (named in their docstrings as ``carts.services.<name>``: ``store.gates`` for the
checkout and the cart push, the model help texts for the review undo and release) are also importable from here:
that is the app's public service API, kept stable while its modules move. The names are looked up when first
asked for (PEP 562 ``__getattr__``), so importing one module of the package (the cart snapshot's ``trip`` reads
``review_queue``) loads only what that module needs.
"""
from __future__ import annotations

from importlib import import_module

#: Public name → the module of this package that holds it.
_HOMES = {
    "CartChange": "ledger", "cart_apply": "ledger", "cart_group": "ledger", "cart_lines": "ledger",
    "cart_publish": "ledger", "cart_publish_batch": "ledger", "cart_snapshot": "ledger", "shopper_group": "ledger",
    "ReviewError": "review_queue", "review_open_for": "review_queue", "review_undecided_counts": "review_queue",
    "review_undecided_for": "review_queue",
    "ReviewOutcome": "review", "UndoOutcome": "review", "review_holds_release": "review", "review_resolve": "review",
    "review_senses": "review", "review_undo": "review", "review_undo_s": "review",
    "receipt_line_senses": "checkout", "visit_checkout": "checkout", "visit_exit_tags_apply": "checkout",
    "DisputeError": "disputes", "dispute_decide": "disputes", "dispute_open": "disputes",
    "dispute_window_h": "disputes",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str):
    """``carts.services.<name>``: the public name from the module that holds it (:data:`_HOMES`)."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(import_module(f".{home}", __name__), name)
