"""URL routes (filled in by the app)."""
app_name = "billing"
urlpatterns: list = []
