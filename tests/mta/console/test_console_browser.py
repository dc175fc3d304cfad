"""The console in a real browser: Debian's chromium, headless, driven by Selenium through
chromedriver, against the running daemon and a real policyd. Logs in with a key, sees the warm-up
table fill from policyd, pauses a pair through the confirmation dialog and sees policyd's own
status change, visits every tab and lifts a suppression. Screenshots go to tests/artifacts/console/
(git-ignored; CI keeps them). Skipped only when chromium is not installed, never in CI (`CI` or
`REQUIRE_BROWSER` set: .ci/run sets the latter).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from typing import Any

import pytest

from tests.mta.conftest import message
from tests.mta.policyd import isp_domains
from tests.mta.proc import REPO
from tests.support.receiver import Script

ARTIFACTS = os.path.join(REPO, "tests", "artifacts", "console")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _need_browser() -> None:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver (chromium-driver)", DRIVER)) if not path]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install .[test])")
    if missing:
        reason = f"browser tests need {', '.join(missing)}: ./scripts/test installs them"
        if os.environ.get("CI") or os.environ.get("REQUIRE_BROWSER"):
            pytest.fail(reason)          # CI installs them (.ci/run): a missing browser there is a broken set-up
        pytest.skip(reason)


@pytest.fixture
def chrome(tmp_path) -> Any:
    _need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1000",
                "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp_path / 'chrome-profile'}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(20)
    os.makedirs(ARTIFACTS, exist_ok=True)
    yield driver
    driver.quit()


def wait_for(driver: Any, what: Callable[[Any], Any], timeout: float = 15.0) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait

    # The page redraws its tables every few seconds: an element found a moment ago may be gone.
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(what)


ANY = None          # a cell row_of does not look at

ROW_SCRIPT = """
const [table, cells] = arguments;
for (const row of document.querySelectorAll(`#${table} tbody tr`)) {
  const texts = [...row.querySelectorAll("td")].map(td => td.innerText.trim());
  if (cells.every((c, i) => c === null || texts[i] === c)) return texts.join(" | ");
}
return null;
"""

CLICK_SCRIPT = """
const [table, cells, label] = arguments;
for (const row of document.querySelectorAll(`#${table} tbody tr`)) {
  const texts = [...row.querySelectorAll("td")].map(td => td.innerText.trim());
  if (!cells.every((c, i) => texts[i] === c)) continue;
  const button = [...row.querySelectorAll("button")].find(b => b.textContent === label);
  if (button) { button.click(); return true; }
}
return false;
"""


def row_of(driver: Any, table: str, *cells: str | None) -> str | None:
    """The text of the first row whose cells start with these texts, or None (read in one step:
    the page may redraw the table at any moment)."""
    return driver.execute_script(ROW_SCRIPT, table, list(cells))


def click_in_row(driver: Any, table: str, cells: list[str], label: str) -> None:
    wait_for(driver, lambda d: d.execute_script(CLICK_SCRIPT, table, cells, label))


def confirm(driver: Any, fields: dict[str, str]) -> None:
    from selenium.webdriver.common.by import By

    dialog = wait_for(driver, lambda d: d.find_element(By.ID, "confirm") if d.find_element(By.ID, "confirm")
                      .get_attribute("open") is not None else None)
    for field_id, value in fields.items():
        box = dialog.find_element(By.ID, field_id)
        box.clear()
        box.send_keys(value)
    dialog.find_element(By.ID, "confirm-ok").click()


def scenario(driver: Any, base: str, key: str, policyd: Any) -> None:
    from selenium.webdriver.common.by import By

    def shot(name: str) -> None:
        driver.save_screenshot(os.path.join(ARTIFACTS, f"{name}.png"))

    driver.get(base + "/console/")
    wait_for(driver, lambda d: d.find_element(By.ID, "login").is_displayed())
    assert not driver.find_element(By.ID, "warmup").is_displayed()          # no data before logging in
    shot("01-login")
    driver.find_element(By.ID, "key").send_keys("mta_not_a_key")
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    wait_for(driver, lambda d: "not accepted" in d.find_element(By.ID, "status").text)
    driver.find_element(By.ID, "key").send_keys(key)
    driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

    # Warm-up: the table fills from policyd (ip1 and ip2 at google and yahoo).
    wait_for(driver, lambda d: row_of(d, "warmup-table", "ip", "ip1", "google"))
    assert "operator: key-op" in driver.find_element(By.ID, "operator").text
    assert "6 pairs" in driver.find_element(By.ID, "warmup-summary").text
    wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "#warmup-charts svg rect.actual"))
    shot("02-warmup")

    # Pause ip1 at google through the dialog; policyd's own status says it is paused.
    click_in_row(driver, "warmup-table", ["ip", "ip1", "google"], "Pause")
    confirm(driver, {"confirm-duration": "2h", "confirm-reason": "checking a complaint spike"})
    wait_for(driver, lambda d: "paused" in (row_of(d, "warmup-table", "ip", "ip1", "google") or ""))
    pairs = json.loads(policyd.cli("status", "--json"))["pairs"]
    [pair] = [p for p in pairs if (p["kind"], p["name"], p["isp"]) == ("ip", "ip1", "google")]
    assert pair["paused"], pair
    shot("03-warmup-paused")

    # Decisions: the pause with its reason.
    driver.find_element(By.ID, "tab-decisions").click()
    wait_for(driver, lambda d: row_of(d, "decisions-table", ANY, "ip ip1 at google", "operator", "pause",
                                      "console (key-op): checking a complaint spike"))
    shot("04-decisions")

    # Queue: the deferring site with its last reply.
    driver.find_element(By.ID, "tab-queue").click()
    wait_for(driver, lambda d: "mailbox busy" in d.find_element(By.ID, "queue-table").text)
    shot("05-queue")

    # Deliverability: per ISP site, then per source.
    driver.find_element(By.ID, "tab-deliverability").click()
    wait_for(driver, lambda d: row_of(d, "deliv-table", "gmail-smtp-in.l.google.test"))
    shot("06-deliverability")

    # Suppressions: search, then lift through the dialog.
    driver.find_element(By.ID, "tab-suppressions").click()
    driver.find_element(By.ID, "supp-q").send_keys("blocked@gmail.example")
    driver.find_element(By.CSS_SELECTOR, "#supp-search button").click()
    wait_for(driver, lambda d: row_of(d, "supp-table", "blocked@gmail.example"))
    shot("07-suppressions")
    click_in_row(driver, "supp-table", ["blocked@gmail.example"], "Lift")
    confirm(driver, {"confirm-reason": "asked by the recipient"})
    wait_for(driver, lambda d: "is not suppressed" in d.find_element(By.ID, "supp-table").text)

    # Back to the warm-up by keyboard-reachable link, then log out: the data is gone.
    driver.find_element(By.ID, "tab-warmup").click()
    wait_for(driver, lambda d: row_of(d, "warmup-table", "ip", "ip1", "google"))
    driver.find_element(By.CSS_SELECTOR, "#logout-form button").click()
    wait_for(driver, lambda d: d.find_element(By.ID, "login").is_displayed())
    assert not driver.find_element(By.ID, "warmup").is_displayed()
    problems = [e for e in driver.get_log("browser") if e["level"] == "SEVERE" and "401" not in e["message"]]
    assert not problems, problems          # no script errors, no Content-Security-Policy violations


async def prepare(start_api: Any, world: Any, dns_server: Any, policyd_factory: Any) -> tuple[Any, Any]:
    """A daemon with policyd, mail delivered to two ISPs, one site deferring, one suppression."""
    google, yahoo = isp_domains(world, dns_server)
    world.domain("slow.example", script=Script(rcpt=lambda a, n: "451 4.2.1 mailbox busy, try later"))
    policyd = policyd_factory(schedules={"test": {"days": [50, 100, 200, 400, 800]}},
                              warmup={"domain_schedule": "test"})
    api = await start_api(policy={"address": policyd.address}, queue={"retry_base": 600, "retry_max": 600})
    for i in range(12):
        await api.mta.send("news@sender.example", [f"g{i}@gmail.example"], message())
    for i in range(6):
        await api.mta.send("news@sender.example", [f"y{i}@yahoo.example"], message())
    await api.mta.send("news@sender.example", ["someone@slow.example"], message())
    await google.await_for(12)
    await yahoo.await_for(6)
    await api.mta.wait_event(lambda e: e["event"] == "deferred")
    status, _e, _h = await api.call("POST", "/v1/suppressions", "op",
                                    json={"address": "blocked@gmail.example", "tenant": "",
                                          "detail": "complained twice"})
    assert status == 201
    return api, policyd


async def run_scenario(driver: Any, api: Any, policyd: Any) -> None:
    # The browser is synchronous: it runs on a thread while this loop serves it.
    try:
        await asyncio.to_thread(scenario, driver, api.base, api.keys["op"], policyd)
    except BaseException:
        driver.save_screenshot(os.path.join(ARTIFACTS, "failure.png"))
        print("browser log:", *driver.get_log("browser"), sep="\n")
        raise
    assert [e["reason"] for e in api.mta.events() if e["event"] == "operator_action"] == ["pause", "lift"]


async def test_console_in_chromium(chrome, start_api, world, dns_server, policyd_factory):
    api, policyd = await prepare(start_api, world, dns_server, policyd_factory)
    await run_scenario(chrome, api, policyd)
