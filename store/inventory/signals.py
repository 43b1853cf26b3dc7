"""What the inventory announces, so that other apps follow the catalogue without the inventory calling them.

``product_photos_changed`` (``store``): a product photo of ``store`` was added or removed (sent after the
transaction commits). ``vision`` subscribes and rebuilds the product recogniser's gallery from the store's photos.
"""
from django.dispatch import Signal

product_photos_changed = Signal()
