"""Headless Chromium (Debian's `chromium` and `chromium-driver`) driven by Selenium, for the UI tests.

    with Browser.start(base_url, artifacts) as browser:
        browser.login(cluster.operator)             # the Basic prompt, answered by the URL once
        browser.open("/ui/apps")
        browser.wait_text("#apps-live", "/web")
        browser.console_errors()                    # SEVERE entries since the last call

Each browser has its own profile, so its cached credentials are its own (an admin's and
a viewer's browser side by side). `save_screenshot(name)` writes `<artifacts>/<name>.png`.
"""
from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path
from typing import Any, Callable
from urllib.parse import quote

from framework.security.bundle import Identity
from tests.support.procs import wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
WAIT = 30.0


def available() -> str | None:
    """Why a browser cannot start here (None: it can)."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        return f"missing {', '.join(missing)}: install Debian's chromium and chromium-driver (`make test` does)"
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed: pip install selenium (the test extras)"
    return None


def _page_answer(entry: dict) -> bool:
    """A UI page's own 4xx answer, as the console logs it ("URL - Failed to load resource: the
    server responded with a status of 422 ...")."""
    if entry.get("source") != "network":
        return False
    match = re.match(r"(\S+) - Failed to load resource: the server responded with a status of (\d+)",
                     entry.get("message", ""))
    if match is None or not 400 <= int(match.group(2)) < 500:
        return False
    path = re.sub(r"^https?://[^/]+", "", match.group(1)).split("?")[0]
    return path.startswith("/ui/") and not path.startswith(("/ui/static/", "/ui/events")) \
        and not path.endswith("/log")


class Browser:
    def __init__(self, driver: Any, base_url: str, artifacts: Path) -> None:
        self.driver = driver
        self.base_url = base_url.rstrip("/")
        self.artifacts = artifacts
        self.errors: list[dict] = []

    @classmethod
    def start(cls, base_url: str, artifacts: Path, width: int = 1400, height: int = 1000) -> "Browser":
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        os.environ.setdefault("SE_AVOID_STATS", "true")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         f"--window-size={width},{height}", "--disable-extensions", "--no-first-run",
                         "--disable-background-networking", "--disable-component-update",
                         "--disable-default-apps", "--disable-sync"):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        options.set_capability("unhandledPromptBehavior", "ignore")
        driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        driver.set_page_load_timeout(WAIT)
        return cls(driver, base_url, artifacts)

    # -- navigation ----------------------------------------------------------------------

    def login(self, identity: Identity | None) -> None:
        """Answer the Basic prompt once (credentials in the URL), then browse without them: the
        browser keeps them for the scheduler's realm, as after a typed answer."""
        if identity is not None:
            scheme, rest = self.base_url.split("://", 1)
            self.driver.get(f"{scheme}://{quote(identity.principal, safe='')}:{quote(identity.secret, safe='')}"
                            f"@{rest}/ui/")
        self.open("/ui/")

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)
        self.mark()

    def mark(self) -> None:
        """Mark this page, so that `same_page()` tells whether it was reloaded since."""
        self.driver.execute_script("window.__dockyardTestMark = true;")

    def same_page(self) -> bool:
        return bool(self.driver.execute_script("return window.__dockyardTestMark === true;"))

    @property
    def path(self) -> str:
        return re.sub(r"^https?://[^/]+", "", self.driver.current_url)

    # -- reading -------------------------------------------------------------------------

    def find(self, css: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "body") -> str:
        found = self.find_all(css)
        return found[0].text if found else ""

    def until(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        """Poll `condition` until truthy; fail naming `what`, where the browser is and what it shows."""
        try:
            return wait_for(condition, timeout=timeout, interval=0.1, what=what)
        except TimeoutError as error:
            raise AssertionError(f"{error} on {self.path}\n{self.text()[:3000]}") from None

    def wait_text(self, css: str, text: str, timeout: float = WAIT) -> None:
        self.until(lambda: text in self.text(css), f"{text!r} in {css}", timeout)

    def console_errors(self) -> list[dict]:
        """The browser console's errors since the last call (also kept in `errors`): every script
        error, console.error and Content-Security-Policy violation, and every failed load but a
        UI page answering 4xx (a refused form or a 422 is a page that says so)."""
        found = [entry for entry in self.driver.get_log("browser")
                 if entry.get("level") == "SEVERE" and not _page_answer(entry)]
        self.errors.extend(found)
        return found

    # -- acting --------------------------------------------------------------------------

    def click(self, css: str, confirm: bool | None = None) -> None:
        """Click; `confirm` answers the page's confirmation dialog (True: OK, False: cancel)."""
        self.find(css).click()
        if confirm is not None:
            from selenium.webdriver.support import expected_conditions
            from selenium.webdriver.support.ui import WebDriverWait

            alert = WebDriverWait(self.driver, 10).until(expected_conditions.alert_is_present())
            alert.accept() if confirm else alert.dismiss()

    def fill(self, css: str, value: str) -> None:
        element = self.find(css)
        element.clear()
        if value:
            element.send_keys(value)

    def set_value(self, css: str, value: str) -> None:
        """Set a field's value at once (long JSON typed key by key is slow)."""
        self.driver.execute_script("arguments[0].value = arguments[1];", self.find(css), value)

    def save_screenshot(self, name: str) -> Path:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / (re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:150] + ".png")
        self.driver.save_screenshot(str(path))
        return path

    def quit(self) -> None:
        self.driver.quit()

    def __enter__(self) -> "Browser":
        return self

    def __exit__(self, *exc: object) -> None:
        self.quit()
