"""Shopper account routes, mounted at the site root: ``/`` (home), ``/accounts/…`` and the PWA files."""
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
    path("accounts/delete/", views.account_delete, name="delete"),
    path("accounts/password/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("accounts/password/reset/sent/", views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("accounts/password/reset/<uidb64>/<token>/", views.PasswordResetConfirmView.as_view(),
         name="password_reset_confirm"),
    path("accounts/password/reset/done/", views.PasswordResetCompleteView.as_view(),
         name="password_reset_complete"),
    path("manifest.webmanifest", views.pwa_manifest, name="pwa_manifest"),
    path("sw.js", views.pwa_service_worker, name="pwa_sw"),
    path("pwa/icon-<int:size>.png", views.pwa_icon, name="pwa_icon"),
]
