"""Account services: shoppers (email + password, the payment card on file) and store managers.

The email address is the username: it is stored lower-cased in both ``User.username`` and ``User.email``, so
``Ann@Example.com`` and ``ann@example.com`` are one account. Card numbers never reach this module: the payment
provider (``store.billing.providers``) turns them into references, and only the brand, the last four digits and
those references are stored on :class:`~store.accounts.models.ShopperProfile`.
"""
from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, Group, Permission
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from .models import ShopperProfile
from store.gates.models import EntryPass, Visit

log = logging.getLogger(__name__)

User = get_user_model()

#: Name of the group that carries a store manager's model permissions (kept in sync by :func:`manager_group_sync`).
MANAGER_GROUP = "store managers"
#: App labels whose models a store manager may view and change in the admin.
MANAGER_APPS = ("layout", "inventory", "gates", "billing", "carts", "sensors", "vision")
#: The permission actions a store manager gets on each of those models.
MANAGER_ACTIONS = ("view", "change", "add")  # ledgers stay append-only: their admins refuse add and change


def email_normalise(email: str) -> str:
    """The account key for an email address: stripped and lower-cased. Raises ``ValidationError`` if malformed."""
    email = (email or "").strip().lower()
    validate_email(email)
    return email


def _user_create(*, email: str, password: str, is_staff: bool) -> AbstractBaseUser:
    try:
        email = email_normalise(email)
    except ValidationError:
        raise ValidationError({"email": "Enter a valid email address."}) from None
    if User.objects.filter(username__iexact=email).exists():
        raise ValidationError({"email": "An account with this email already exists."})
    user = User(username=email, email=email, is_staff=is_staff, is_superuser=False)
    try:
        validate_password(password, user=user)
    except ValidationError as exc:
        raise ValidationError({"password": exc.messages}) from None
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:  # a concurrent sign-up with the same email won the race
        raise ValidationError({"email": "An account with this email already exists."}) from None
    return user


@transaction.atomic
def shopper_create(*, email: str, password: str) -> AbstractBaseUser:
    """Create a shopper: a Django user whose username is the email, and an empty :class:`ShopperProfile`.

    Raises ``ValidationError`` (a dict keyed by ``email`` or ``password``) if the email is malformed or taken, or
    the password fails ``AUTH_PASSWORD_VALIDATORS``.
    """
    user = _user_create(email=email, password=password, is_staff=False)
    ShopperProfile.objects.create(user=user)
    log.info("shopper %s signed up", user.pk)
    return user


def manager_group_sync() -> Group:
    """The ``store managers`` group, its permissions set to exactly ``MANAGER_ACTIONS`` on every model of
    ``MANAGER_APPS`` (cameras, gates, controllers, products… can be added; nothing can be deleted).

    Idempotent; permissions are the ones Django creates after ``migrate``.
    """
    group, _ = Group.objects.get_or_create(name=MANAGER_GROUP)
    codename_prefixes = tuple(f"{action}_" for action in MANAGER_ACTIONS)
    perms = [
        p for p in Permission.objects.filter(content_type__app_label__in=MANAGER_APPS).select_related("content_type")
        if p.codename.startswith(codename_prefixes)
        and p.codename.split("_", 1)[1] == p.content_type.model
    ]
    group.permissions.set(perms)
    return group


@transaction.atomic
def manager_create(*, email: str, password: str) -> AbstractBaseUser:
    """Create a store manager: ``is_staff`` (admin and dashboard access), never ``is_superuser``.

    The manager joins the ``store managers`` group, which holds view and change permissions on the models of
    layout, inventory, gates, billing, carts and sensors (:func:`manager_group_sync`). Raises ``ValidationError``
    as :func:`shopper_create` does.
    """
    user = _user_create(email=email, password=password, is_staff=True)
    user.groups.add(manager_group_sync())
    log.info("manager %s created", user.pk)
    return user


def shopper_profile_get(*, user: AbstractBaseUser) -> ShopperProfile:
    """The user's shopper profile, created empty if the user has none yet (e.g. made with ``createsuperuser``)."""
    profile, _ = ShopperProfile.objects.get_or_create(user=user)
    return profile


class AccountDeleteRefused(Exception):
    """The account cannot be deleted now. ``code``: ``open_visit`` (a visit is not settled yet: inside the store,
    awaiting review or payment), ``staff`` (managers are removed by an administrator)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


#: Visit states after which nothing more is owed or billed (``store.gates.models.Visit.State``).
SETTLED_VISIT_STATES = ("billed", "closed", "refused")


@transaction.atomic
def shopper_delete(*, user: AbstractBaseUser) -> str:
    """Delete a shopper's account and personal data; returns ``"deleted"`` or ``"anonymised"``.

    What must stay, and why: visits, cart events, receipts, payment attempts, refunds and disputes are the store's
    accounting ledger (tax and card-network records; their foreign keys are PROTECT). So a shopper who ever
    entered the store is **anonymised**, never removed: the username becomes ``deleted-<id>``, the email and names
    are emptied, the password made unusable, the account deactivated (its sessions stop working at once: Django
    refuses inactive users), the card on file forgotten (payment method, brand, last four; the provider's customer
    id is kept to reconcile past payments with the provider's records) and every entry pass deleted. The ledger
    then points at an account that names nobody. A shopper who never entered is **deleted** outright (profile and
    passes cascade).

    Raises :class:`AccountDeleteRefused` while a visit is unsettled (``open_visit``: inside the store, exited but
    not billed, under review, payment failed) or for a staff account (``staff``). Nothing is changed then.
    """
    User.objects.select_for_update().filter(pk=user.pk).first()
    if user.is_staff or user.is_superuser:
        raise AccountDeleteRefused("staff", "a manager account is removed by an administrator")
    open_visits = Visit.objects.filter(shopper=user).exclude(state__in=SETTLED_VISIT_STATES).count()
    if open_visits:
        raise AccountDeleteRefused(
            "open_visit", "a visit of yours is not settled yet (in the store, being checked or awaiting payment); "
                          "try again once its receipt is issued")
    user_id = user.pk
    if not Visit.objects.filter(shopper=user).exists():
        user.delete()
        log.info("shopper %s deleted their account (no visits: removed)", user_id)
        return "deleted"
    EntryPass.objects.filter(shopper=user).delete()
    ShopperProfile.objects.filter(user=user).update(payment_method_ref="", card_brand="", card_last4="")
    user.username = f"deleted-{user_id}"
    user.email = ""
    user.first_name = user.last_name = ""
    user.set_unusable_password()
    user.is_active = False
    user.save()
    user.groups.clear()
    user.user_permissions.clear()
    log.info("shopper %s deleted their account (visits kept for accounting: anonymised)", user_id)
    return "anonymised"
