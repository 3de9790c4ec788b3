"""The dashboard in a real headless Chromium (Debian's ``chromium`` and ``chromium-driver``),
driven by Selenium against the app served on 127.0.0.1: the overview draws its chart and
refreshes itself, filters, a job, retrying, the bulk actions, pausing a queue, a job full of markup that
must not run, and a page of another name resolving to 127.0.0.1 (DNS rebinding) that must
read nothing. Each page is saved as a screenshot in test-artifacts/dashboard/.

Slow (a browser start): ``pytest -m "not browser"`` leaves these out. Without Chromium they
are skipped, saying why, except in CI (CI=true), where `.ci/run` installs it and they must run.
"""

import os
import threading
import time
from pathlib import Path

import pytest

from dbbasic_queue import Queue
from dbbasic_queue.dashboard import DashboardApp
from dbbasic_queue.dashboard.server import serve

pytestmark = pytest.mark.browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
EVIL_TYPE = "<script>document.title='pwned'</script>"
EVIL_PAYLOAD = {"note": "<img src=x onerror=\"window.pwned=1;document.title='pwned'\">"}
EVIL_ERROR = "<svg onload=\"window.pwned=2\">"
WAIT = 20  # seconds any condition may take on a busy machine
REBIND = "rebind.example"  # the browser resolves it to 127.0.0.1, as after a DNS rebinding


def unavailable(message):
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """One headless Chromium for the module, with a fresh profile and no network of its own."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        unavailable(f"{' and '.join(missing)} missing: apt-get install chromium chromium-driver "
                    f"(the dashboard's browser tests need them)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError as error:
        unavailable(f"selenium is not installed ({error}): pip install -e '.[test]'")
    options = Options()
    options.binary_location = CHROMIUM
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--window-size=1280,900",
                     f"--host-resolver-rules=MAP {REBIND} 127.0.0.1",
                     f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    yield driver
    driver.quit()


@pytest.fixture
def served(tmp_path):
    """A queue on real time and its dashboard on a free port of 127.0.0.1: (queue, URL)."""
    queue = Queue(tmp_path / "data" / "queue.tsv")
    server = serve(DashboardApp(queue, refresh_seconds=1), "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield queue, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=WAIT)


def wait(driver, condition, what):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
    # An element of the page a click is leaving goes stale while it is read: not yet.
    return WebDriverWait(driver, WAIT, poll_frequency=0.1,
                         ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: condition(d), message=f"waited {WAIT} s for {what}")


def css(driver, selector):
    from selenium.webdriver.common.by import By
    return driver.find_elements(By.CSS_SELECTOR, selector)


def screenshot(driver, name):
    """The whole page, beyond the window's height, as test-artifacts/dashboard/NAME.png."""
    import base64
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}})
    path = ARTIFACTS / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    assert path.stat().st_size > 10_000


def seed(queue):
    """Completed, failed, scheduled and due jobs of three types."""
    for n in range(6):
        queue.enqueue("send_email", {"to": f"user{n}@example.com", "subject": "Welcome"})
    for n in range(3):
        queue.enqueue("resize_image", {"file": f"photo-{n}.png", "width": 640})
    queue.enqueue("sync_crm", {"account": 7})
    queue.process_jobs({"send_email": lambda p: {"sent": True},
                        "resize_image": fail(RuntimeError, "ffmpeg not found"),
                        "sync_crm": fail(ConnectionError, "crm.example.com timed out")}, 1)
    queue.enqueue("send_email", {"to": "later@example.com"}, time.time() + 3600)
    queue.enqueue("sync_crm", {"account": 8})


def fail(kind, message):
    def handler(payload):
        raise kind(message)
    return handler


def fresh(action):
    """``action()``, again if an element it used was replaced meanwhile (the overview redraws
    its parts every few seconds), for at most WAIT seconds."""
    from selenium.common.exceptions import StaleElementReferenceException
    deadline = time.monotonic() + WAIT
    while True:
        try:
            return action()
        except StaleElementReferenceException:
            if time.monotonic() > deadline:
                raise


def text(driver, selector):
    return fresh(lambda: " ".join(element.text for element in css(driver, selector)))


def click(driver, selector):
    fresh(lambda: css(driver, selector)[0].click())


def test_the_overview_draws_its_chart_and_refreshes_without_reloading(browser, served):
    queue, address = served
    seed(queue)
    browser.get(address + "/")
    wait(browser, lambda d: css(d, "#chart svg rect.bar.completed"), "the chart's bars")
    assert text(browser, '[data-field="status.failed"]') == "4"
    assert "send_email" in text(browser, "#by-type") and "later@" not in browser.page_source
    assert len(css(browser, "#next-runs tbody tr")) == 1
    # The throughput charts: per minute for the last hour, per hour for the last days
    wait(browser, lambda d: css(d, "#chart-hours svg rect.bar.completed"), "the hours' bars")
    assert css(browser, "#chart svg rect.bar.failed")
    assert [text(browser, f'[data-field="throughput.hour.{kind}"]')
            for kind in ("completed", "failed", "retried")] == ["6", "4", "0"]
    # Nothing came from anywhere but the dashboard itself
    sources = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name)")
    assert sources and all(source.startswith(address + "/") for source in sources)
    screenshot(browser, "overview")
    # When a job is added, the count changes in place: the page is not reloaded
    browser.execute_script("window.stillTheSamePage = true")
    queue.enqueue("send_email", {"to": "new@example.com"})
    wait(browser, lambda d: text(d, '[data-field="status.pending"]') == "3", "the refreshed count")
    # The refresh keeps each type's Pause button (a form the server made, with its token)
    assert len(css(browser, '#by-type tbody form[action="/actions/pause"] button')) == 3
    assert browser.execute_script("return window.stillTheSamePage") is True


def test_filtering_the_jobs_and_opening_one(browser, served):
    from selenium.webdriver.support.ui import Select
    queue, address = served
    seed(queue)
    browser.get(address + "/jobs")
    Select(css(browser, 'select[name="status"]')[0]).select_by_value("failed")
    Select(css(browser, 'select[name="type"]')[0]).select_by_value("resize_image")
    click(browser, "form.filters button")
    wait(browser, lambda d: "status=failed" in d.current_url, "the filtered page")
    badges = [element.text for element in css(browser, "table.jobs .badge")]
    assert badges == ["failed"] * 3
    assert text(browser, "p.summary").startswith("3 jobs match")
    screenshot(browser, "jobs-filtered")
    click(browser, "table.jobs a.id")
    wait(browser, lambda d: css(d, "dl.facts"), "the job's page")
    assert '"file": "photo-2.png"' in text(browser, "pre")  # newest first: the last enqueued
    assert "ffmpeg not found" in text(browser, "pre.error")
    screenshot(browser, "job")


def test_the_jobs_list_refreshes_in_place_keeping_the_ticked_jobs(browser, served):
    queue, address = served
    seed(queue)
    failed = sorted(job["id"] for job in queue.jobs() if job["status"] == "failed")
    browser.get(address + "/jobs")
    assert '"to": "user5@example.com"' in text(browser, "table.jobs td.payload")  # the preview
    for job_id in failed[:2]:
        click(browser, f'input[type="checkbox"][value="{job_id}"]')
    browser.execute_script("window.stillTheSamePage = true")
    new = queue.enqueue("send_email", {"to": "newcomer@example.com"})
    wait(browser, lambda d: css(d, f'input[type="checkbox"][value="{new}"]'), "the new job's row")
    assert text(browser, "#jobs-count strong") == "13"
    ticked = [box.get_attribute("value") for box in css(browser, 'input[name="id"]:checked')]
    assert sorted(ticked) == failed[:2]
    assert browser.execute_script("return window.stillTheSamePage") is True
    screenshot(browser, "jobs-refreshed")
    # Unticking the refresh stops it
    click(browser, "#auto-refresh")
    stamp = css(browser, "table.jobs")[0].get_attribute("data-refreshed")
    queue.enqueue("send_email", {"to": "unseen@example.com"})
    deadline = time.monotonic() + 2  # two refresh periods: none may come
    while time.monotonic() < deadline:
        assert css(browser, "table.jobs")[0].get_attribute("data-refreshed") == stamp
        time.sleep(0.2)
    assert "unseen@" not in browser.page_source


def test_every_page_fits_a_phone_360_pixels_wide(browser, served):
    queue, address = served
    seed(queue)
    queue.enqueue("send_weekly_newsletter_digest", {"list": "everyone"})
    browser.set_window_size(360, 800)
    try:
        for name, path in (("overview-360", "/"), ("jobs-360", "/jobs"),
                           ("failures-360", "/failures"), ("workers-360", "/workers")):
            browser.get(address + path)
            if path == "/":
                wait(browser, lambda d: css(d, "#chart svg"), "the chart")
            width = browser.execute_script("return document.documentElement.clientWidth")
            assert width <= 400
            assert browser.execute_script(
                "return document.documentElement.scrollWidth") <= width, path
            wider = browser.execute_script(
                "var limit = arguments[0] + 0.5;"
                " return Array.from(document.querySelectorAll('header.top, main > *, form, .panel,"
                " .scroll, table.grid')).filter(function (node) {"
                " return !node.closest('.scroll, .panel') || node.matches('.scroll, .panel'); })"
                ".filter(function (node) {"
                " return node.getBoundingClientRect().right > limit; })"
                ".map(function (node) { return node.tagName + '.' + node.className; })", width)
            assert wider == [], (path, wider)
            # A type is never broken mid-word: each type cell's text is one line
            lines = browser.execute_script(
                "return Array.from(document.querySelectorAll('td.type')).map(function (cell) {"
                " var range = document.createRange(); range.selectNodeContents(cell);"
                " var tops = Array.from(range.getClientRects()).map(function (rect) {"
                "   return Math.round(rect.bottom); });"
                " return new Set(tops).size; })")
            assert all(count == 1 for count in lines), (path, lines)
            screenshot(browser, name)
    finally:
        browser.set_window_size(1280, 900)


def test_retrying_a_failed_job_shows_it_pending(browser, served):
    queue, address = served
    seed(queue)
    failed = next(job for job in queue.jobs() if job["status"] == "failed")
    browser.get(f"{address}/jobs/{failed['id']}")
    click(browser, f'form[action="/jobs/{failed["id"]}/retry"] button')
    wait(browser, lambda d: css(d, "p.flash"), "the confirmation message")
    assert text(browser, "h1 .badge") == "pending"
    assert queue.get_job(failed["id"])["status"] == "pending"
    screenshot(browser, "job-retried")


def test_retrying_a_failure_group_asks_first(browser, served):
    queue, address = served
    seed(queue)
    browser.get(address + "/failures")
    assert "RuntimeError: ffmpeg not found" in text(browser, "table.failures")
    assert "RuntimeError" in text(browser, "table.failures td.error")
    screenshot(browser, "failures")
    click(browser, "a.retry-group")
    wait(browser, lambda d: "Retry these" in text(d, "h1"), "the confirmation page")
    assert queue.stats()["by_type"]["resize_image"]["failed"] == 3  # asking changed nothing
    screenshot(browser, "retry-failed-confirm")
    click(browser, "form.action button")
    wait(browser, lambda d: css(d, "p.flash"), "the result")
    assert "3 failed jobs are pending again" in text(browser, "p.flash")
    assert queue.stats()["by_type"]["resize_image"]["pending"] == 3


def test_pausing_a_queue_with_its_button_holds_its_jobs_until_resumed(browser, served):
    queue, address = served
    queue.enqueue("send_email", {"to": "ann@example.com"}, queue="emails")
    browser.get(address + "/")
    click(browser, '#queues form[action="/actions/pause"] button')
    wait(browser, lambda d: css(d, "p.flash"), "the confirmation message")
    assert "Paused" in text(browser, "p.flash") and "paused" in text(browser, "#queues")
    assert [entry["name"] for entry in queue.paused()] == ["emails"]
    assert queue.process_jobs({"send_email": lambda p: None}) == 0
    screenshot(browser, "queue-paused")
    click(browser, '#queues form[action="/actions/resume"] button')
    wait(browser, lambda d: "Resumed" in text(d, "p.flash"), "the resume message")
    assert queue.paused() == []
    assert queue.process_jobs({"send_email": lambda p: None}) == 1


def test_ticked_jobs_are_deleted_in_bulk_after_a_confirmation_with_their_count(browser,
                                                                            served):
    from selenium.webdriver.support.ui import Select
    queue, address = served
    seed(queue)
    failed = sorted(job["id"] for job in queue.jobs() if job["status"] == "failed")
    browser.get(address + "/jobs?status=failed")
    for job_id in failed[:2]:
        click(browser, f'input[type="checkbox"][value="{job_id}"]')
    Select(css(browser, 'form#bulk select[name="action"]')[0]).select_by_value("delete")
    screenshot(browser, "bulk-selected")
    click(browser, "form#bulk button")
    wait(browser, lambda d: "Delete 2 selected jobs?" in text(d, "h1"), "the confirmation")
    assert all(queue.get_job(job_id) for job_id in failed)  # asking changed nothing
    screenshot(browser, "bulk-confirm")
    click(browser, "form.action button")
    wait(browser, lambda d: css(d, "p.flash"), "the result")
    assert "2 of the selected jobs are deleted" in text(browser, "p.flash")
    assert [queue.get_job(job_id) for job_id in failed[:2]] == [None, None]
    assert queue.get_job(failed[2])["status"] == "failed"


def test_purge_counts_before_it_removes(browser, served):
    queue, address = served
    seed(queue)
    browser.get(address + "/")
    field = css(browser, 'input[name="older_than"]')[0]
    field.clear()
    field.send_keys("0s")
    click(browser, 'form.inline button')
    wait(browser, lambda d: css(d, "p.dry-run"), "the dry run's count")
    assert text(browser, "p.dry-run strong") == "6"
    assert queue.stats()["by_status"]["completed"] == 6
    screenshot(browser, "purge-dry-run")
    click(browser, "form.action button")
    wait(browser, lambda d: css(d, "p.flash"), "the result")
    assert queue.stats()["by_status"]["completed"] == 0


def test_a_job_made_of_markup_shows_as_text_and_runs_nothing(browser, served):
    queue, address = served
    seed(queue)
    evil = queue.enqueue(EVIL_TYPE, EVIL_PAYLOAD)
    queue.process_jobs({EVIL_TYPE: fail(ValueError, EVIL_ERROR)}, 1)
    pages = {"overview": "/", "jobs-markup": "/jobs?q=onerror", "job-markup": f"/jobs/{evil}",
             "failures-markup": "/failures"}
    for name, path in pages.items():
        browser.get(address + path)
        if name == "overview":  # the refresh rebuilds the type table from JSON
            wait(browser, lambda d: css(d, "#chart svg"), "the refreshed overview")
        assert browser.title.endswith("dbbasic-queue") and "pwned" not in browser.title
        assert browser.execute_script("return window.pwned") is None
        assert css(browser, "img, svg[onload], [onerror], [onload]") == []
        assert len(css(browser, "script")) == 1  # the dashboard's own, from its file
        assert EVIL_TYPE in browser.find_element("tag name", "body").text
        if name == "job-markup":
            body = browser.find_element("tag name", "body").text
            assert EVIL_PAYLOAD["note"].replace('"', '\\"') in body and EVIL_ERROR in body
        if name != "overview":
            screenshot(browser, name)


def test_a_page_of_another_name_resolving_to_loopback_reads_nothing(browser, served):
    queue, address = served
    seed(queue)
    rebound = address.replace("127.0.0.1", REBIND)

    browser.get(rebound + "/jobs")
    page = browser.find_element("tag name", "body").text
    browser.set_script_timeout(WAIT)
    fetched = browser.execute_async_script(  # what the rebinding page's script would do
        "const done = arguments[arguments.length - 1];"
        "fetch('/api/overview').then(r => r.text().then(t => done([r.status, t])),"
        "                            e => done([0, String(e)]));")

    assert "does not answer to the host name" in page and "send_email" not in page
    assert fetched[0] == 400 and "send_email" not in fetched[1]
    browser.get(address + "/jobs")  # its own name still works
    assert "send_email" in browser.find_element("tag name", "body").text
