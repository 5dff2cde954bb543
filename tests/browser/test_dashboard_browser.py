"""The dashboard in a real browser: Debian's chromium driven by Selenium through Debian's
chromedriver (nothing downloads a browser), against a real `farm-server serve`, a real
gearmand, real workers and real Tempest against the real Keystone.

Screenshots of each page go to $FARM_SCREENSHOTS when it is set (docs/images is made so:
`FARM_SCREENSHOTS=docs/images make test-browser`), else to the test's directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from farm_lab.keystone import ADMIN_PASSWORD, Keystone
from farm_lab.server import FARM, FarmServer, server_worker
from farm_lab.workers import WorkerFactory
from farm_worker.environments import PrepareResult
from harness.checks import processes_under

pytestmark = [pytest.mark.gearman, pytest.mark.browser]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
DOMAIN_TEST = ("tempest.api.identity.v3.test_domains.DefaultDomainTestJSON."
               "test_default_domain_exists")
DISCOVERY = "tempest.api.identity.v3.test_api_discovery.TestApiDiscovery."
FIVE = [DOMAIN_TEST] + [DISCOVERY + name for name in (
    "test_identity_v3_existence", "test_list_api_versions", "test_api_version_resources",
    "test_api_media_types")]
XSS = '<img src=x onerror="window.__xss=1"><script>window.__xss=2</script>'


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[WebDriver]:
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--no-first-run", "--disable-extensions",
                "--disable-background-networking", "--disable-component-update",
                f"--user-data-dir={tmp_path / 'chromium'}"):
        opts.add_argument(arg)
    service = Service(CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=opts)
    try:
        yield driver
    finally:
        try:
            driver.quit()
        finally:
            if service.process is not None and service.process.poll() is None:
                service.process.kill()
                service.process.wait()


def shots(tmp_path: Path) -> Path:
    out = Path(os.environ.get("FARM_SCREENSHOTS") or tmp_path / "shots")
    out.mkdir(parents=True, exist_ok=True)
    return out


def until(driver: WebDriver, cond: Callable[[WebDriver], Any], timeout_s: float = 300,
          what: str = "") -> Any:
    try:
        return WebDriverWait(driver, timeout_s, poll_frequency=0.1).until(cond)
    except TimeoutException:
        raise AssertionError(f"waited {timeout_s} s for {what}; the browser is at "
                             f"{driver.current_url}: {text_of(driver, 'main')[:1500]}") from None


def text_of(driver: WebDriver, css: str) -> str:
    try:
        return str(driver.find_element(By.CSS_SELECTOR, css).text)
    except WebDriverException:
        return ""


def sign_in(driver: WebDriver, server: FarmServer, token: str) -> None:
    field = driver.find_element(By.NAME, "token")
    field.clear()
    field.send_keys(token)
    driver.find_element(By.CSS_SELECTOR, "#signin button").click()


def submit(server: FarmServer, test_id: str, conf: dict[str, Any], tests: dict[str, Any],
           **more: Any) -> None:
    r = server.api("POST", "/v1/tests", json={"test_id": test_id, "tempest": {
        "version": "47.0.0"}, "conf": conf, "tests": tests, **more})
    assert r.status_code == 201, r.text


def test_sign_in_csrf_escaping_phone_width_and_sign_out(
        browser: WebDriver, server: FarmServer, tmp_path: Path) -> None:
    """No Tempest needed: runs queued with no worker, and reports sent as a worker would."""
    out = shots(tmp_path)
    browser.get(server.url + "queue")
    until(browser, lambda d: "/signin" in d.current_url, 30, "the sign-in page")
    sign_in(browser, server, server.worker_token)
    # the refusal is the page the form's POST answers: waited for, not read at once
    until(browser, lambda d: "workers report, people sign in" in text_of(d, "#problem"), 30,
          "the refusal of a worker token")
    sign_in(browser, server, server.user_token)
    until(browser, lambda d: d.current_url.endswith("/queue"), 30, "back to the queue page")
    cookie = browser.get_cookie("farm_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert browser.execute_script("return document.cookie") == ""  # not readable by scripts
    # a run whose message carries markup, changed while the page is open: text, not HTML
    server.queue_test("xss-1")
    browser.get(server.url)
    until(browser, lambda d: "Live" in text_of(d, "#live"), 30, "the live stream")
    r = requests.post(server.url + "update-test-status/", timeout=30, headers={
        "Authorization": f"Bearer {server.worker_token}"}, json={
        "test_id": "xss-1", "status": "installing", "worker": "w-x", "message": XSS})
    assert r.status_code == 202, r.text
    until(browser, lambda d: text_of(d, '[data-test="xss-1"] [data-f=state]') == "installing",
          30, "the row to change live")
    browser.get(server.url + "runs/xss-1")
    until(browser, lambda d: XSS in text_of(d, "[data-f=message]"), 30, "the message as text")
    assert browser.execute_script("return window.__xss") is None
    # the server away: the page says so, and comes back live by itself
    server.stop()
    until(browser, lambda d: "Disconnected, retrying" in text_of(d, "#live"), 60,
          "the page to say it lost the stream")
    server.serve()
    until(browser, lambda d: "Live" in text_of(d, "#live"), 60, "the stream back")
    r = requests.post(server.url + "update-test-status/", timeout=30, headers={
        "Authorization": f"Bearer {server.worker_token}"}, json={
        "test_id": "xss-1", "status": "running", "worker": "w-x", "message": "back"})
    assert r.status_code == 202, r.text
    until(browser, lambda d: text_of(d, "#run [data-f=state]") == "running", 30,
          "a report after the reconnect")
    # a form without its CSRF token is refused and nothing is done
    browser.execute_script("document.querySelector('#actions input[name=csrf]').value='x'")
    browser.find_element(By.ID, "cancel").click()
    until(browser, lambda d: "CSRF" in text_of(d, "#problem"), 30, "the CSRF refusal")
    assert server.api("GET", "/v1/tests/xss-1").json()["test"]["state"] == "running"
    # a phone's width: nothing wider than the screen but the tables' own scrolling
    browser.set_window_size(390, 844)
    browser.get(server.url)
    width = browser.execute_script("return [document.documentElement.scrollWidth, "
                                   "window.innerWidth]")
    assert width[0] <= width[1] + 1, width
    browser.save_screenshot(str(out / "dashboard-phone.png"))
    browser.set_window_size(1280, 900)
    browser.find_element(By.ID, "signout").click()
    until(browser, lambda d: "/signin" in d.current_url, 30, "signed out")
    browser.get(server.url)
    until(browser, lambda d: "/signin" in d.current_url, 30, "a page needs a session again")


@pytest.mark.tempest
@pytest.mark.cloud
def test_live_runs_compare_run_failed_again_and_cancel(
        browser: WebDriver, server: FarmServer, workers: WorkerFactory, keystone: Keystone,
        tempest47: PrepareResult, tmp_path: Path) -> None:
    out = shots(tmp_path)
    env = {**os.environ, "FARM_SERVER_URL": server.url, "FARM_TOKEN": server.user_token}
    worker = server_worker(workers, server, "brw")
    browser.get(server.url)
    sign_in(browser, server, server.user_token)
    until(browser, lambda d: "Live" in text_of(d, "#live"), 60, "the runs page's stream")
    browser.execute_script("document.body.dataset.marker = 'no reload'")
    # 1. a passing run appears on the runs page and ends there, without a reload
    submit(server, "brw-pass", keystone.tempest_conf(), {"list": FIVE})
    until(browser, lambda d: text_of(d, '[data-test="brw-pass"] [data-f=state]') == "passed",
          600, "the new run to pass on the runs page")
    assert browser.execute_script("return document.body.dataset.marker") == "no reload"
    assert text_of(browser, '[data-test="brw-pass"] [data-f=passed]') == "5"
    assert not browser.find_elements(By.ID, "runs-empty")
    # 2. the same tests with a default domain that does not exist: one test fails. Its
    # page, open from the start, follows the run live and shows the end
    bad = keystone.tempest_conf()
    bad["identity"]["default_domain_id"] = "no-such-domain"
    submit(server, "brw-fail", bad, {"list": FIVE})
    browser.get(server.url + "runs/brw-fail")
    browser.execute_script("document.body.dataset.marker = 'no reload'")
    seen: set[str] = set()

    def ended(d: WebDriver) -> bool:
        seen.add(text_of(d, "#run [data-f=state]"))
        return bool(d.execute_script("return document.body.dataset.ended || ''"))
    until(browser, ended, 600, "the end event")
    assert "running" in seen  # followed live (the page was never reloaded until the end)
    assert browser.execute_script("return document.body.dataset.ended") == "failed"
    until(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#tests tr.t")) == 5, 60,
          "the results after the end")
    assert text_of(browser, "#run [data-f=failed]") == "1"
    browser.save_screenshot(str(out / "dashboard-run.png"))
    # every test's row links its history
    browser.find_element(By.ID, "t-status").send_keys("failed")
    visible = [r for r in browser.find_elements(By.CSS_SELECTOR, "#tests tr.t")
               if r.is_displayed()]
    assert [r.find_element(By.CSS_SELECTOR, "td").text.split("[")[0] for r in visible] == [
        DOMAIN_TEST]
    # 3. compare with the previous run of this cloud and version: the regression
    browser.find_element(By.ID, "compare-previous").click()
    until(browser, lambda d: d.find_elements(By.ID, "cmp-regressed"), 30, "the comparison")
    assert DOMAIN_TEST in text_of(browser, "#cmp-regressed")
    assert text_of(browser, '[data-kind="regressed"] b') == "1"
    browser.save_screenshot(str(out / "dashboard-compare.png"))
    r = subprocess.run([FARM, "compare", "brw-pass", "brw-fail", "--format", "json"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 1, r.stderr  # a test regressed
    assert [c["name"].split("[")[0] for c in json.loads(r.stdout)["regressed"]] == [
        DOMAIN_TEST]
    # the report and the comparison as files, opened from disk: they load nothing, and
    # the report's filters work there too
    for argv, name in ((["results", "brw-fail", "--format", "html"], "report.html"),
                       (["compare", "brw-pass", "brw-fail", "--format", "html"], "cmp.html")):
        r = subprocess.run([FARM, *argv, "-o", str(tmp_path / name)], capture_output=True,
                           text=True, timeout=60, env=env)
        assert (tmp_path / name).exists(), r.stderr
    browser.get(f"file://{tmp_path / 'report.html'}")
    assert len(browser.find_elements(By.CSS_SELECTOR, "#tests tr.t")) == 5
    browser.find_element(By.ID, "t-status").send_keys("failed")
    assert len([r for r in browser.find_elements(By.CSS_SELECTOR, "#tests tr.t")
                if r.is_displayed()]) == 1
    browser.find_element(By.ID, "t-group").click()  # group by class: the headers show
    assert any(h.is_displayed() for h in browser.find_elements(By.CSS_SELECTOR, "tr.grp"))
    browser.get(f"file://{tmp_path / 'cmp.html'}")
    assert DOMAIN_TEST in text_of(browser, "#cmp-regressed")
    browser.back()
    browser.back()
    # 4. its history: passed, then failed, failing since brw-fail
    browser.find_element(By.PARTIAL_LINK_TEXT, DOMAIN_TEST).click()
    until(browser, lambda d: "failing since" in text_of(d, "main"), 30, "the history")
    assert "1 passed, 1 failed" in text_of(browser, "main")
    browser.save_screenshot(str(out / "dashboard-history.png"))
    # 5. run the failed tests again: the secret is asked again, a new run of exactly them
    browser.get(server.url + "runs/brw-fail")
    # the page settled: its stream said the run ended (the banner above the form changed)
    until(browser, lambda d: d.execute_script("return document.body.dataset.ended || ''")
          == "failed", 60, "the end event of an ended run")
    browser.find_element(By.NAME, "secret:auth:admin_password").send_keys(ADMIN_PASSWORD)
    browser.find_element(By.ID, "run-failed").click()
    until(browser, lambda d: "/runs/t-" in d.current_url, 30, "the new run's page")
    new_id = browser.current_url.rsplit("/", 1)[1]
    doc = server.wait_state(new_id, {"passed", "failed", "error"}, 600)
    assert doc["test"]["tests"] == {"list": [DOMAIN_TEST]}
    assert doc["test"]["state"] == "failed" and doc["test"]["summary"]["failed"] == 1
    until(browser, lambda d: d.execute_script("return document.body.dataset.ended || ''")
          == "failed", 60, "the rerun's end on its page")
    assert "brw-fail" in text_of(browser, "#run table.kv")  # linked to its origin
    # 6. cancel from the browser stops the worker's Tempest
    submit(server, "brw-cxl", keystone.tempest_conf(), {"regex": "tempest.api.identity"})
    browser.get(server.url + "runs/brw-cxl")
    until(browser, lambda d: text_of(d, "#run [data-f=state]") == "running", 600, "running")
    until(browser, lambda d: int(text_of(d, "#run [data-f=done]") or 0) > 0, 600,
          "the first test done")
    assert processes_under(worker.work_dir)  # Tempest runs
    # the queue page meanwhile: the worker, its version and its current run
    browser.get(server.url + "queue")
    until(browser, lambda d: "brw-cxl" in text_of(d, "#queue"), 60, "the worker's run")
    queue = text_of(browser, "#queue")
    assert "47.0.0" in queue and "Workers (1)" in queue  # its control connection folded in
    browser.save_screenshot(str(out / "dashboard-queue.png"))
    browser.get(server.url + "runs/brw-cxl")
    until(browser, lambda d: "Live" in text_of(d, "#live"), 60, "the stream (a settled page)")
    browser.find_element(By.ID, "cancel").click()
    until(browser, lambda d: d.execute_script("return document.body.dataset.ended || ''")
          == "cancelled", 120, "cancelled on the page")
    end = time.monotonic() + 120
    while processes_under(worker.work_dir):
        assert time.monotonic() < end, "Tempest still runs after the cancel"
        time.sleep(0.5)
    browser.get(server.url)
    until(browser, lambda d: "Live" in text_of(d, "#live"), 60, "the runs page")
    browser.save_screenshot(str(out / "dashboard-runs.png"))
    for text in (browser.page_source, server.log.read_text()):
        assert ADMIN_PASSWORD not in text
