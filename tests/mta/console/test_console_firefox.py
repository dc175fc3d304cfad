"""The same console scenario in Firefox (Debian's firefox-esr, headless). Debian ships no
geckodriver, and this machine reaches no download site, so Firefox is driven over its own
Marionette protocol (the `marionette-driver` package from PyPI), through a thin adapter that
gives the scenario the few Selenium calls it makes. Skipped only when Firefox is not installed,
never in CI (`REQUIRE_BROWSER`)."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import time
from typing import Any

import pytest

from tests.mta.console.test_console_browser import ARTIFACTS, prepare, run_scenario
from tests.support.receiver import free_port

FIREFOX = shutil.which("firefox-esr") or shutil.which("firefox")


class FirefoxDriver:
    """The Selenium calls the scenario makes, over Marionette."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def get(self, url: str) -> None:
        self.client.navigate(url)

    def _errors(self) -> tuple[type[BaseException], ...]:
        from marionette_driver import errors

        return errors.NoSuchElementException, errors.StaleElementException

    def find_element(self, by: str, value: str) -> Any:
        from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

        missing, stale = self._errors()
        try:
            return Element(self.client.find_element(by, value), self)
        except missing:
            raise NoSuchElementException(value) from None
        except stale:
            raise StaleElementReferenceException(value) from None

    def find_elements(self, by: str, value: str) -> list[Any]:
        return [Element(e, self) for e in self.client.find_elements(by, value)]

    def execute_script(self, script: str, *args: Any) -> Any:
        return self.client.execute_script(script, script_args=list(args))

    def save_screenshot(self, path: str) -> None:
        with open(path, "wb") as f:
            f.write(base64.b64decode(self.client.screenshot(format="base64")))

    def get_log(self, _kind: str) -> list[Any]:
        return []           # Marionette has no console log call; the CSP check runs in Chromium


class Element:
    def __init__(self, element: Any, driver: FirefoxDriver) -> None:
        self.element = element
        self.driver = driver

    @property
    def text(self) -> str:
        return self.element.text

    def find_element(self, by: str, value: str) -> Any:
        from selenium.common.exceptions import NoSuchElementException

        missing, _stale = self.driver._errors()
        try:
            return Element(self.element.find_element(by, value), self.driver)
        except missing:
            raise NoSuchElementException(value) from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self.element, name)      # click, send_keys, clear, is_displayed, get_attribute


@pytest.fixture
def firefox(tmp_path) -> Any:
    try:
        from marionette_driver.marionette import Marionette
    except ImportError:
        Marionette = None
    if FIREFOX is None or Marionette is None:
        reason = "the Firefox test needs firefox-esr and marionette-driver: ./scripts/test installs them"
        if os.environ.get("CI") or os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(reason)
        pytest.skip(reason)
    port = free_port(["127.0.0.1"])
    profile = tmp_path / "firefox-profile"
    profile.mkdir()
    (profile / "user.js").write_text(f'user_pref("marionette.port", {port});\n'
                                     'user_pref("browser.shell.checkDefaultBrowser", false);\n'
                                     'user_pref("datareporting.policy.dataSubmissionEnabled", false);\n')
    proc = subprocess.Popen([FIREFOX, "--headless", "--marionette", "--no-remote", "--profile", str(profile),
                             "--width", "1400", "--height", "1000", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)    # its noise, not ours
    client = Marionette(host="127.0.0.1", port=port)
    deadline = time.monotonic() + 60
    while True:
        try:
            client.start_session()
            break
        except Exception:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                raise
            time.sleep(0.5)
    os.makedirs(ARTIFACTS, exist_ok=True)
    yield FirefoxDriver(client)
    try:
        client.delete_session()
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


async def test_console_in_firefox(firefox, start_api, world, dns_server, policyd_factory):
    api, policyd = await prepare(start_api, world, dns_server, policyd_factory)
    await run_scenario(firefox, api, policyd)
