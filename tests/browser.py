"""Browser-test fixtures: the real ASGI server (daphne) in a thread, headless Debian Chromium through Playwright,
and helpers to log in, make people and take screenshots. Used by ``tests/test_browser_*.py``.

Use it from a test module by importing the fixtures you need::

    from browser import asgi_server, browser, page, manager_page, login, screenshot, user_make  # noqa: F401
    pytestmark = pytest.mark.django_db(transaction=True)

* :func:`asgi_server` (session; one per process): ``store.asgi.application`` served by daphne on a free ``127.0.0.1`` port, in a
  thread of the test process, so HTTP **and WebSockets** work and the test database (pytest-django's, shared by
  the test and the server threads) is the one the tests write. ``asgi_server.url`` is the base URL;
  ``asgi_server.call(fn, *args, **kwargs)`` runs the sync ``fn`` from the server's event loop (as
  ``carts.live`` runs a live replay), so a cart change it makes is pushed to the open sockets of the in-memory
  channel layer, and returns its result. Tests must use ``django_db(transaction=True)`` (the server threads see
  committed rows only).
* :func:`browser` (per test): Chromium at ``/usr/bin/chromium`` (Debian's package; never ``playwright install``).
  Absent: the test is skipped with a message, except when ``CI=true``, where it fails.
* :func:`page` / :func:`manager_page` (function): a fresh browser context each (its own cookies), a phone-sized
  viewport for the shopper and a desktop one for the manager, ``base_url`` set, 15 s default timeout.
* :func:`login` (page, email, password) through the real login form; :func:`screenshot` (page, name) writes
  ``var/screenshots/<name>.png`` (ignored by git); :func:`user_make` makes a shopper (optionally with the dummy
  provider's test card) or a manager.

Timing: never sleep; wait on page state with Playwright's auto-waiting ``expect`` (default 15 s here).
"""
from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
SCREENSHOTS = REPO / "var" / "screenshots"
CHROMIUM = Path(os.environ.get("WALKOUT_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
TIMEOUT_MS = 15_000
PASSWORD = "take-it-and-go"


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes"}


def need_chromium() -> None:
    """Skip (or, on CI, fail) when Debian's Chromium or the ``playwright`` package is missing."""
    missing = []
    if not (CHROMIUM.is_file() and os.access(CHROMIUM, os.X_OK)):
        missing.append(f"{CHROMIUM} (apt-get install -y chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("the playwright package (pip install playwright; no browser download)")
    if missing:
        message = "browser tests need " + " and ".join(missing)
        if _ci():
            pytest.fail(message + " — CI=true, so this is an error, not a skip", pytrace=False)
        pytest.skip(message)


@dataclass
class AsgiServer:
    """A running daphne server. ``url``: ``http://127.0.0.1:<port>``; ``loop``: its asyncio event loop."""

    url: str
    host: str
    port: int
    loop: asyncio.AbstractEventLoop

    def call(self, fn: Callable[..., Any], *args: Any, timeout: float = 60.0, **kwargs: Any) -> Any:
        """Run the sync ``fn(*args, **kwargs)`` in a worker thread started from the server's event loop and return
        its result (its ``async_to_sync`` channel-layer sends then run on that loop, where the consumers are).
        Raises what ``fn`` raised; ``TimeoutError`` after ``timeout`` seconds."""
        from asgiref.sync import sync_to_async

        def run() -> Any:
            from django.db import close_old_connections

            try:
                return fn(*args, **kwargs)
            finally:
                close_old_connections()

        future = asyncio.run_coroutine_threadsafe(sync_to_async(run, thread_sensitive=False)(), self.loop)
        return future.result(timeout=timeout)


_server: AsgiServer | None = None
_server_lock = threading.Lock()


def _server_start() -> AsgiServer:
    """Start daphne in a daemon thread once per process (the Twisted reactor cannot run twice) and return it."""
    global _server
    with _server_lock:
        if _server is not None:
            return _server
        from daphne.server import Server, twisted_loop  # installs the asyncio Twisted reactor first

        from store.asgi import application

        ready = threading.Event()
        server = Server(application, endpoints=["tcp:port=0:interface=127.0.0.1"], signal_handlers=False,
                        ready_callable=ready.set, websocket_timeout=600, http_timeout=60, ping_interval=5)
        errors: list[BaseException] = []

        def serve() -> None:
            asyncio.set_event_loop(twisted_loop)
            try:
                server.run()
            except BaseException as exc:  # reported below
                errors.append(exc)
                ready.set()

        threading.Thread(target=serve, name="daphne-test-server", daemon=True).start()
        if not ready.wait(30) or errors:
            pytest.fail(f"the test ASGI server did not start: {errors[0]!r}" if errors else
                        "the test ASGI server did not start within 30 s")
        # ready_callable fires just before the reactor runs; the listening port comes up once it does.
        for _ in range(600):
            if server.listening_addresses or errors:
                break
            threading.Event().wait(0.05)
        if not server.listening_addresses:
            pytest.fail(f"the test ASGI server did not start listening: {errors[0]!r}" if errors else
                        "the test ASGI server did not start listening within 30 s")
        host, port = server.listening_addresses[0]
        _server = AsgiServer(url=f"http://{host}:{port}", host=host, port=port, loop=twisted_loop)
        return _server


@pytest.fixture(scope="session")
def asgi_server(django_db_setup) -> AsgiServer:
    """daphne serving ``store.asgi.application`` on a free 127.0.0.1 port, in a daemon thread (module docstring).

    One server per test process, however many test modules import this fixture (each import is its own fixture
    definition to pytest, but the Twisted reactor cannot run twice); it ends with the process.
    """
    need_chromium()
    return _server_start()


@pytest.fixture
def browser(transactional_db, asgi_server) -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright, for one test (module docstring).

    Playwright's sync API keeps an asyncio loop registered in the test's thread while it runs, which Django's
    async-safety check takes for an async context; while this fixture lives (and only then) the test thread may
    therefore use the ORM with ``DJANGO_ALLOW_ASYNC_UNSAFE`` set. It depends on ``transactional_db`` so that it is
    torn down (loop gone, variable restored) before the database is flushed.
    """
    need_chromium()
    from playwright.sync_api import sync_playwright

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as pw:
            chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
            try:
                yield chromium
            finally:
                chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _context(browser: Any, asgi_server: AsgiServer, **options: Any) -> Any:
    context = browser.new_context(base_url=asgi_server.url, **options)
    context.set_default_timeout(TIMEOUT_MS)
    from playwright.sync_api import expect

    expect.set_options(timeout=TIMEOUT_MS)
    return context


@pytest.fixture
def page(browser, asgi_server) -> Iterator[Any]:
    """A shopper's phone: a fresh context (own cookies), 390×844 viewport, touch, ``base_url`` = the server."""
    context = _context(browser, asgi_server, viewport={"width": 390, "height": 844}, device_scale_factor=2,
                       is_mobile=True, has_touch=True)
    try:
        yield context.new_page()
    finally:
        context.close()


@pytest.fixture
def manager_page(browser, asgi_server) -> Iterator[Any]:
    """A manager's desktop: a fresh context (own cookies), 1280×900 viewport."""
    context = _context(browser, asgi_server, viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def login(page: Any, email: str, password: str = PASSWORD) -> None:
    """Log ``page`` in through the real login form (``/accounts/login/``); fails the test if it does not work."""
    from playwright.sync_api import expect

    page.goto("/accounts/login/")
    page.fill("input[name=username]", email)
    page.fill("input[name=password]", password)
    page.click("form button[type=submit]")
    expect(page.locator("form[action='/accounts/logout/']")).to_be_visible()


def screenshot(page: Any, name: str, *, full_page: bool = True) -> Path:
    """Save ``var/screenshots/<name>.png`` (the key pages of a run, for people to look at); returns the path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def user_make(email: str, *, password: str = PASSWORD, card: bool = False, manager: bool = False):
    """A shopper (``card=True``: with the dummy provider's test card 4242… on file) or, ``manager=True``, a store
    manager (``accounts.services.manager_create``). Call it from the test (DB access through pytest-django)."""
    from store.accounts.payment import shopper_card_attach
    from store.accounts.services import manager_create, shopper_create

    if manager:
        return manager_create(email=email, password=password)
    user = shopper_create(email=email, password=password)
    if card:
        shopper_card_attach(user=user, card_token="4242424242424242")
    return user


def screenshots_clear(prefix: str) -> None:
    """Remove earlier screenshots whose names start with ``prefix`` (so a run's set is its own)."""
    if SCREENSHOTS.is_dir():
        for p in SCREENSHOTS.glob(f"{prefix}*.png"):
            p.unlink()


__all__ = ["AsgiServer", "asgi_server", "browser", "page", "manager_page", "login", "screenshot", "user_make",
           "need_chromium", "screenshots_clear", "PASSWORD", "SCREENSHOTS"]


#: JavaScript that lists what a person would see as broken layout on the page now (an empty list: none):
#: the page wider than the window (sideways scrolling), a card or table that scrolls sideways inside itself, and
#: a word broken across lines inside a table cell, a list line or a heading ("Q / ty", "$1. / 00", "1-1- / 2"; in
#: a heading, list line or button only a word that would fit on one line of it: a longer one must break).
_LAYOUT_JS = r"""
(scrollOk) => {
  const out = [];
  const vw = document.documentElement.clientWidth;
  if (document.documentElement.scrollWidth > vw + 1) out.push(`page is ${document.documentElement.scrollWidth}px wide in a ${vw}px window`);
  for (const el of document.querySelectorAll('.card, section, table, main')) {
    if (el.offsetParent === null || scrollOk) continue;
    if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible')
      out.push(`${el.tagName.toLowerCase()}#${el.id || ''}.${el.className || ''} scrolls sideways (${el.scrollWidth} > ${el.clientWidth})`);
  }
  let checked = 0;
  for (const el of document.querySelectorAll('td, th, li, h1, h2, dt, dd, .pill, button, .btn')) {
    if (el.offsetParent === null || checked > 400) continue;
    checked++;
    const walker = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
    let node;
    while ((node = walker.nextNode())) {
      const text = node.textContent;
      const re = /\S{2,}/g; let m;
      while ((m = re.exec(text))) {
        const r = document.createRange(); r.setStart(node, m.index); r.setEnd(node, m.index + m[0].length);
        const rects = [...r.getClientRects()].filter(x => x.width > 0);
        const lines = new Set(rects.map(x => Math.round(x.top)));
        if (lines.size < 2) continue;
        // In a table cell a word never has to break (the column can widen, the table scroll in its card). In a
        // heading, list line or button a word wider than the element's whole line (a 40-character e-mail address
        // on a phone) must break somewhere: only a word that would have fitted on one line counts.
        if (el.tagName !== 'TD' && el.tagName !== 'TH') {
          let box = el;
          while (box.parentElement && getComputedStyle(box).display === 'inline') box = box.parentElement;
          const cs = getComputedStyle(box);
          const room = box.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
          const width = rects.reduce((a, x) => a + x.width, 0);
          if (width > room + 1) continue;
        }
        out.push(`"${m[0]}" broken across lines in <${el.tagName.toLowerCase()}>`); break;
      }
    }
  }
  return out;
}
"""


def layout_problems(page: Any, *, scroll_ok: bool = False) -> list[str]:
    """What looks broken on ``page`` now, as a person would see it (``_LAYOUT_JS``); an empty list when nothing.
    ``scroll_ok``: a wide table may scroll sideways inside its card (a manager's table on a phone)."""
    return page.evaluate(_LAYOUT_JS, scroll_ok)


def assert_fits(page: Any, what: str = "", *, scroll_ok: bool = False) -> None:
    """Fail when :func:`layout_problems` finds anything (text that does not fit, tables broken apart)."""
    problems = layout_problems(page, scroll_ok=scroll_ok)
    assert not problems, f"{what or page.url}: " + "; ".join(problems[:8])


__all__ += ["layout_problems", "assert_fits"]


#: Browser window sizes the people's-side tests look at pages in: a desktop and a phone (issue #15).
DESKTOP = {"viewport": {"width": 1440, "height": 900}}
PHONE = {"viewport": {"width": 390, "height": 844}, "device_scale_factor": 2, "is_mobile": True, "has_touch": True}


@pytest.fixture
def desk(browser, asgi_server) -> Iterator[Any]:
    """A page in a fresh desktop-sized context (:data:`DESKTOP`)."""
    ctx = _context(browser, asgi_server, **DESKTOP)
    yield ctx.new_page()
    ctx.close()


@pytest.fixture
def phone(browser, asgi_server) -> Iterator[Any]:
    """A page in a fresh phone-sized, touch context (:data:`PHONE`)."""
    ctx = _context(browser, asgi_server, **PHONE)
    yield ctx.new_page()
    ctx.close()
