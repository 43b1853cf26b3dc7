"""Vision: cameras, detection and tracking, floor projection, shopper tracks and hand positions."""
