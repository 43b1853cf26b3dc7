"""Shopper account routes, mounted at the site root: ``/`` (home) and ``/accounts/…``."""
from django.urls import path

from . import views

app_name = "accounts"
urlpatterns = [
    path("", views.home, name="home"),
    path("accounts/signup/", views.signup, name="signup"),
    path("accounts/login/", views.LoginView.as_view(), name="login"),
    path("accounts/logout/", views.LogoutView.as_view(), name="logout"),
    path("accounts/card/", views.card_add, name="card_add"),
    path("accounts/card/attach/", views.CardAttachView.as_view(), name="card_attach"),
]
