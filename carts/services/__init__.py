"""The carts app's service layer: every write of a cart, a review decision, a checkout or a dispute goes through a
function here (DESIGN.md: "one writer per fact"; other apps and the offline tools call these, never the models).

One module per concept; callers import each name from the module that holds it (``from carts.services.checkout
import visit_checkout``) and docstrings name it there (``carts.services.checkout.visit_checkout``). This package
itself exports nothing, so importing one module (the cart snapshot's ``trip`` reads ``review_queue``) loads only
what that module needs.

- ``ledger``: cart events appended (``CartChange``, ``cart_apply``), the cart's lines (``cart_lines``,
  ``cart_line_data``), the snapshot contract and its live push (``cart_snapshot``, ``cart_publish``,
  ``cart_publish_batch``, the channel groups ``cart_group``, ``shopper_group``).
- ``review_queue``: which review items still hold a visit's checkout (``review_open_for``, ``review_undecided_for``,
  ``review_undecided_counts``) and ``ReviewError``.
- ``review``: a person's review decisions, their undo window and release (``review_resolve``, ``review_undo``,
  ``review_undo_s``, ``review_holds_release``, ``ReviewOutcome``, ``UndoOutcome``), the senses a decision records
  (``review_senses``).
- ``corrections``: a billed visit's money corrected by a later review decision (charge or refund).
- ``checkout``: the visit's cart → receipt → capture at exit (``visit_checkout``), RFID exit tags on the cart
  (``visit_exit_tags_apply``), a receipt line's senses (``receipt_line_senses``).
- ``disputes``: a shopper disputes a receipt line, a manager decides (``dispute_open``, ``dispute_decide``,
  ``dispute_window_h``, ``DisputeError``).
"""
