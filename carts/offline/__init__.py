"""Offline tooling, in one place: what reads recordings and writes figures, never part of a running store's loop.

Simulated sessions with known truth (:mod:`.simulation`, the product recogniser's model :mod:`.simulation_products`,
generated shelf streams :mod:`.synthetic`, RFID exit lanes :mod:`.rfid_simulation`), importers of the AiFi
AutoCheckout data (:mod:`.autocheckout` converts a test case into a Walkout recording, a cps-test session through
:mod:`.autocheckout_cps`, the store's layout from :mod:`.autocheckout_store`, plates with
:mod:`.autocheckout_plates`), replay and evaluation of a
recording through the store loop (:mod:`.replay`, :mod:`.evaluation`, shelf events alone :mod:`.shelf_events`), the
device emulator that plays a recording against a running store (:mod:`.emulator`), camera clock offsets found in
a recording (:mod:`.clock`), and the product and reach benchmarks on real data (:mod:`.product_bench`,
:mod:`.activity_bench`). The runtime apps never import this package, except the dashboard's live replay of a
recording (``carts.live``, ``carts.dashboard``) and the replay task (``carts.tasks``), which are tooling offered
in the manager's pages.
"""
