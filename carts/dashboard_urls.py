"""URL routes (filled in by the app)."""
app_name = "dashboard"
urlpatterns: list = []
