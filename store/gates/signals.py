"""What the gates announce, so that other apps follow visits without the gates calling them (no import of carts).

``visit_admitted`` (``visit``, ``gate``, ``at``): a gate admitted a visit (sent after the transaction commits);
``visit_exit_scanned`` (``visit``, ``gate``, ``at``): an exit scan exited a visit.
``carts.runtime_publish`` subscribes and puts them on the store's ``gate`` stream for the store loop (bind the visit to the track at the gate; exit it).
"""
from django.dispatch import Signal

visit_admitted = Signal()
visit_exit_scanned = Signal()
