"""Account forms: input shape and validation only. Sign-up and the card go through :mod:`store.accounts.services`."""
from __future__ import annotations

import re
from datetime import date

from django import forms
from django.contrib.auth.forms import AuthenticationForm, PasswordResetForm
from django.core.exceptions import ValidationError
from django.utils import timezone


class SignUpForm(forms.Form):
    """Email (the username) and a password typed twice; the rules are the service's and AUTH_PASSWORD_VALIDATORS."""

    email = forms.EmailField(max_length=150, widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}))
    password1 = forms.CharField(label="Password", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))
    password2 = forms.CharField(label="Password again", strip=False,
                                widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}))

    def clean(self) -> dict:
        data = super().clean()
        if data.get("password1") and data.get("password2") and data["password1"] != data["password2"]:
            self.add_error("password2", "The two passwords differ.")
        return data


class EmailAuthenticationForm(AuthenticationForm):
    """Django's login form with the username labelled and treated as an email (case-insensitive)."""

    username = forms.CharField(label="Email", max_length=150,
                               widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}))

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()


class _NoEchoInput(forms.TextInput):
    """A text input that never writes the submitted value back into the page (card numbers, CVC)."""

    def format_value(self, value):
        return None


def luhn_ok(number: str) -> bool:
    """The Luhn check digit of a card number (ISO/IEC 7812-1) is right."""
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


class DummyCardForm(forms.Form):
    """Embedded profile only: a test card typed in the page (the dummy provider takes test numbers only).

    Expiry and CVC are checked for shape here and go no further; the number goes to the provider.
    """

    number = forms.CharField(label="Card number", max_length=23, widget=_NoEchoInput(attrs={
        "autocomplete": "cc-number", "inputmode": "numeric", "placeholder": "4242 4242 4242 4242"}))
    expiry = forms.CharField(label="Expiry (MM/YY)", max_length=7, widget=forms.TextInput(attrs={
        "autocomplete": "cc-exp", "inputmode": "numeric", "placeholder": "12/34"}))
    cvc = forms.CharField(label="CVC", max_length=4, widget=_NoEchoInput(attrs={
        "autocomplete": "cc-csc", "inputmode": "numeric", "placeholder": "123"}))

    def clean_number(self) -> str:
        number = re.sub(r"[\s-]", "", self.cleaned_data["number"])
        if not number.isdigit() or not 12 <= len(number) <= 19 or not luhn_ok(number):
            raise ValidationError("This is not a valid card number.")
        return number

    def clean_expiry(self) -> tuple[int, int]:
        m = re.fullmatch(r"\s*(\d{1,2})\s*/\s*(\d{2}|\d{4})\s*", self.cleaned_data["expiry"])
        if not m:
            raise ValidationError("Give the expiry as MM/YY, e.g. 08/29.")
        if not 1 <= int(m.group(1)) <= 12:
            raise ValidationError(f"There is no month {int(m.group(1))}: the month is 01 to 12 (MM/YY).")
        month, year = int(m.group(1)), int(m.group(2))
        year = year + 2000 if year < 100 else year
        today = timezone.now().date()
        if date(year, month, 1) < today.replace(day=1):
            raise ValidationError("This card has expired.")
        return month, year

    def clean_cvc(self) -> str:
        cvc = self.cleaned_data["cvc"].strip()
        if not re.fullmatch(r"\d{3,4}", cvc):
            raise ValidationError("The CVC is the 3 or 4 digits on the card.")
        return cvc


class AccountDeleteForm(forms.Form):
    """Confirm deleting the account: the current password and an explicit tick."""

    password = forms.CharField(label="Your password", strip=False,
                               widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}))
    confirm = forms.BooleanField(label="Yes, delete my account and my data", required=True)

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_password(self) -> str:
        password = self.cleaned_data["password"]
        if not self.user.check_password(password):
            raise ValidationError("This is not your password.")
        return password


class EmailPasswordResetForm(PasswordResetForm):
    """Django's password-reset form; the address is matched case-insensitively (as the account key is)."""

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()
