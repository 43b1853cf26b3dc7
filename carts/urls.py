"""URL routes (filled in by the app)."""
app_name = "carts"
urlpatterns: list = []
