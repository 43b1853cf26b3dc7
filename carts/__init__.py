"""Carts: fusion of shelf events with shopper tracks (``carts.fusion``), cart ledger, review queue, live cart."""
