"""Driving Airflow 3's web UI with a real headless Chromium (Debian's ``chromium`` package
through Playwright), for the browser tests.

Selectors are the ones Airflow's React UI keeps stable for its own tests and forms rather
than CSS classes (Chakra's generated ``css-…`` classes change with every build):

* the trigger button and the form's submit button carry ``data-testid``s
  (``trigger-dag-button``, ``trigger-dag-submit``);
* every run parameter's widget is rendered with the id ``element_<param name>`` (Airflow's
  FlexibleForm), so a field is found by our parameter's name, whatever its label says.

Widgets, by the Param's JSON schema (``foundryflow.compile.airflow.to_param``): strings are
inputs, ``enum`` a react-select drop-down, booleans a switch, ``object`` a Monaco JSON editor,
a union such as ``["object", "array"]`` (spec type ``json``) a JSON textarea.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

CHROMIUM = Path("/usr/bin/chromium")


def missing_browser() -> str | None:
    """Why the browser tests cannot run here, or None when they can."""
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} is missing (Debian package 'chromium': ./dev test installs it"
            " with apt-get as root or with passwordless sudo)"
        )
    if find_spec("playwright") is None:
        return "the playwright package is missing (dev extra: ./dev test installs it)"
    return None


@contextmanager
def chromium() -> Iterator[Browser]:
    """Debian's Chromium, headless, driven by Playwright (no Playwright-downloaded browser)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"]
        )
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser: Browser, base_url: str, width: int = 1400, height: int = 1000) -> Page:
    """A page whose clipboard works: JSON is pasted into Monaco editors, like a user does."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base_url)
    context.set_default_timeout(20_000)
    return context.new_page()


def login(page: Page, base_url: str, user: str, password: str) -> None:
    """Through the simple auth manager's login page, as a person would."""
    page.goto(f"{base_url}/")
    page.wait_for_url(re.compile(r"/auth/login"))
    page.locator('input[name="username"]').fill(user)
    page.locator('input[name="password"]').fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/login" not in url)


def open_trigger_form(page: Page, base_url: str, dag_id: str) -> Locator:
    """The DAG's page, then its Trigger button; returns the trigger dialog."""
    page.goto(f"{base_url}/dags/{dag_id}")
    page.get_by_test_id("trigger-dag-button").click()
    dialog = page.get_by_role("dialog")
    dialog.locator("[id^='element_']").first.wait_for()
    return dialog


# --- the form's widgets ------------------------------------------------------------------


def fill_text(dialog: Locator, name: str, value: str) -> None:
    dialog.locator(f"#element_{name}").fill(value)


def fill_json_textarea(dialog: Locator, name: str, value: Any) -> None:
    """A union-typed param (``["object", "array"]``): a textarea that must hold JSON (the
    form checks it parses to one of the types, and shows it re-indented)."""
    dialog.locator(f"textarea#element_{name}").fill(json.dumps(value, indent=2))


def select_option(dialog: Locator, name: str, value: str) -> None:
    """An ``enum`` param: open the drop-down and click the option."""
    dialog.locator(f"#element_{name}").get_by_role("combobox").click()
    dialog.page.get_by_role("option", name=value, exact=True).click()
    hidden = dialog.locator(f'input[type="hidden"][name="element_{name}"]')
    assert hidden.input_value() == value, f"{name}: drop-down holds {hidden.input_value()!r}"


def set_switch(dialog: Locator, name: str, value: bool) -> None:
    """A boolean param: Chakra's switch (its checkbox input is visually hidden)."""
    checkbox = dialog.locator(f'input[type="checkbox"][name="element_{name}"]')
    if checkbox.is_checked() != value:
        dialog.locator(f'[id="switch:element_{name}"]').click()
    assert checkbox.is_checked() == value, name


def paste_into_editor(dialog: Locator, name: str, value: Any) -> None:
    """An ``object`` param: Airflow's Monaco JSON editor. Select all, then paste through the
    clipboard: typing is not reliable there (Monaco closes brackets and quotes and inserts
    completions by itself, and in our runs some typed letters never arrived)."""
    page = dialog.page
    dialog.locator(f"#element_{name} .monaco-editor").click()
    page.keyboard.press("ControlOrMeta+a")
    page.evaluate("text => navigator.clipboard.writeText(text)", json.dumps(value, indent=2))
    page.keyboard.press("ControlOrMeta+v")
    # the editor shows what it holds (spaces as no-break spaces); wait for the paste to land
    pretty = json.dumps(value, indent=2).splitlines()
    expected = pretty[1] if len(pretty) > 1 else pretty[0]
    lines = dialog.locator(f"#element_{name} .view-lines")
    for _ in range(50):
        if expected.strip() in lines.inner_text().replace("\xa0", " "):
            return
        page.wait_for_timeout(100)
    raise AssertionError(f"{name}: the editor shows {lines.inner_text()!r} after pasting")
