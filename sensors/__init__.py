"""Shelf sensors: ingestion of load-cell samples, weight-event detection (``sensors.weight``), ShelfEvent rows."""
