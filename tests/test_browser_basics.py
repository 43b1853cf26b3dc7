"""What a new visitor meets first, in real headless Chromium against daphne (tests/browser.py): error messages
that answer the input given, no Django debug page, and the admin with its CSS (static files served by the app in
every profile). Screenshots: var/screenshots/basics-*.png."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from browser import (  # noqa: F401
    REPO, asgi_server, assert_fits, browser, login, manager_page, page, screenshot, screenshots_clear, user_make,
)

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def embedded(settings):
    settings.PAYMENT_PROVIDER = "dummy"


def test_card_expiry_error_answers_the_month_given(page):
    from playwright.sync_api import expect

    screenshots_clear("basics-")
    user_make("new@walkout.test")
    login(page, "new@walkout.test")
    page.goto("/accounts/card/")
    page.fill("input[name=number]", "4242 4242 4242 4242")
    page.fill("input[name=expiry]", "13/30")
    page.fill("input[name=cvc]", "123")
    page.click("form button[type=submit]")
    errors = page.locator("form[action='/accounts/card/']")
    expect(errors).to_contain_text("There is no month 13")
    assert "Give the expiry as MM/YY." not in errors.inner_text()
    screenshot(page, "basics-card-expiry-13")


def test_not_found_is_a_plain_page_and_admin_has_its_css(page, manager_page, asgi_server):
    from playwright.sync_api import expect

    page.goto("/no/such/page/")
    expect(page.locator("#not-found")).to_contain_text("This page isn't here")
    assert "URLconf" not in page.content() and "DEBUG = True" not in page.content()
    screenshot(page, "basics-404")

    user_make("boss@walkout.test", manager=True)
    login(manager_page, "boss@walkout.test")
    css: list[int] = []
    manager_page.on("response", lambda r: css.append(r.status) if r.url.endswith(".css") else None)
    manager_page.goto("/admin/")
    expect(manager_page.locator("#site-name")).to_be_visible()
    # the admin's stylesheet applied: its header is coloured, not the browser's default white
    bg = manager_page.evaluate("getComputedStyle(document.getElementById('header')).backgroundColor")
    assert bg not in ("rgba(0, 0, 0, 0)", "rgb(255, 255, 255)"), bg
    assert css and all(s == 200 for s in css), css
    screenshot(manager_page, "basics-admin-css")


def test_default_profile_has_debug_off():
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_DEBUG", "WALKOUT_PROFILE")}
    env["DJANGO_SETTINGS_MODULE"] = "store.settings"
    out = subprocess.run([sys.executable, "-c", "from django.conf import settings; print(settings.DEBUG)"],
                         cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr


def test_stock_adjustment_errors_answer_what_was_given(manager_page):
    """Item 10: one field given is never answered "not both"; each message names what is missing in the input."""
    from playwright.sync_api import expect

    from tests.test_inventory_stock import make_world

    w = make_world()
    user_make("boss@walkout.test", manager=True)
    login(manager_page, "boss@walkout.test")
    manager_page.goto(f"/manage/inventory/products/{w.cola.pk}/")
    form = manager_page.locator("#adjust form")
    form.locator("input[name=quantity]").fill("-2")
    form.locator("button[type=submit]").click()
    form = manager_page.locator("#adjust form")
    expect(form).to_contain_text("say why the stock is adjusted")
    assert "not both" not in form.inner_text()
    screenshot(manager_page, "basics-adjust-no-reason")
    form.locator("input[name=counted]").fill("5")
    form.locator("input[name=quantity]").fill("-2")
    form.locator("button[type=submit]").click()
    expect(manager_page.locator("#adjust form")).to_contain_text("not both")
