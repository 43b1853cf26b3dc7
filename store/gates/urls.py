"""URL routes (filled in by the app)."""
app_name = "gates"
urlpatterns: list = []
