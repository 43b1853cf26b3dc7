"""URL routes (filled in by the app)."""
app_name = "accounts"
urlpatterns: list = []
