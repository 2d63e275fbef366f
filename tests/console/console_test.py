#!/usr/bin/env python3
"""The web console in a real browser, against a running Sluice server.

    python3 tests/console/console_test.py --url http://127.0.0.1:7878 [--screenshot PATH] [--token TOKEN]

The server must have the demo streams (`sluice demo`, or a test server
started with them). The script drives the page as a user would: the streams
list, a windowed query's live rows, chart and operator figures, its entry in
the queries list, an SQL error with its position marked in the editor, and
cancelling the query (checked through the HTTP API). It exits non-zero with
a message on the first failure and prints "console test passed" at the end.

Needs the Python package `playwright` (its driver only: no browser download)
and Debian's `chromium`.
"""

import argparse
import json
import re
import sys
import time
import urllib.error
import urllib.request

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

# Requests per status in 1-second event-time windows over the demo stream;
# with its watermark (ts - 2 s) the first window closes about 3 s in.
WINDOWED_QUERY = """SELECT window_end, status, count(*) AS requests, avg(duration) AS avg_duration
FROM TUMBLE(weblog, ts, INTERVAL '1' SECOND)
GROUP BY window_start, window_end, status"""

# Statements with an error at a known place: (sql, line, column, token, what
# the message says).
BAD_STATEMENTS = [
    ("SELECT ip,\n  nope FROM weblog", 2, 3, "nope", "nope"),
    ("SELECT ip\nFROM weblog WHER status > 1", 2, 18, "status", "status"),
]


class Failure(Exception):
    pass


def check(condition, message):
    if not condition:
        raise Failure(message)


def wait_for(what, probe, timeout=20.0, interval=0.2):
    """Calls probe() until it returns something truthy; fails after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(interval)
    raise Failure(f"timed out after {timeout:.0f} s waiting for {what} (last seen: {last!r})")


class Api:
    """The server's HTTP API, for checking what the page claims."""

    def __init__(self, url, token):
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"null")
        except (urllib.error.URLError, OSError) as error:
            raise Failure(f"{method} {self.url}{path}: {error}") from None

    def queries(self):
        status, body = self.request("GET", "/v1/queries")
        check(status == 200, f"GET /v1/queries answered {status}: {body}")
        return {query["query_id"]: query for query in body}


def run(args):
    api = Api(args.url, args.token)
    status, streams = api.request("GET", "/v1/streams")
    check(status == 200, f"the server at {args.url} answered GET /v1/streams with {status}: {streams}")
    check(any(s["name"] == "weblog" for s in streams), "the server has no weblog stream: start it with the demo streams")
    before = set(api.queries())

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        page_errors = []
        page.on("pageerror", lambda error: page_errors.append(str(error)))
        query_id = None
        try:
            query_id = drive(page, api, args, before)
            check(not page_errors, f"the page threw: {page_errors}")
        finally:
            # Leave nothing running when a step failed half-way.
            if query_id and query_id in api.queries():
                api.request("DELETE", f"/v1/queries/{query_id}")
            browser.close()


def drive(page, api, args, before):
    page.goto(args.url, wait_until="load")
    page.set_default_timeout(15_000)
    if args.token:
        step("token asked for")
        page.wait_for_selector("[data-testid=token-bar]", state="visible")
        page.fill("[data-testid=token-input]", args.token)
        page.click("[data-testid=token-save]")

    step("streams list shows weblog")
    page.wait_for_selector("[data-testid=stream-item][data-name=weblog]")

    step("windowed query submitted with Run")
    page.fill("[data-testid=sql-editor]", WINDOWED_QUERY)
    page.click("[data-testid=run]")
    page.wait_for_function("() => document.querySelector('[data-testid=query-id]').textContent.trim() !== ''")
    query_id = page.text_content("[data-testid=query-id]").strip()
    check(query_id not in before, f"the page opened {query_id}, not a new query")
    check(query_id in api.queries(), f"{query_id} is not in GET /v1/queries")

    step(f"{query_id}: rows in the results table")
    wait_for("rows in the results table", lambda: page.locator("[data-testid=result-row]").count(), timeout=25)
    headers = page.locator("#results thead th").all_text_contents()
    check(any(h.startswith("requests") for h in headers), f"results header lacks requests: {headers}")
    rows = page.evaluate("window.sluiceConsole.resultRows()")
    check(all({"window_end", "status", "requests"} <= set(row) for row in rows), f"unexpected result rows: {rows[:3]}")
    first_cells = page.locator("[data-testid=result-row]").first.locator("td").all_text_contents()
    check(len(first_cells) == len(headers) and first_cells[0].startswith("20"), f"odd first row: {first_cells}")

    step(f"{query_id}: points on the chart")
    check(page.input_value("[data-testid=chart-y]") == "requests", "the chart's y is not requests")
    check(page.input_value("[data-testid=chart-x]") == "window_end", "the chart's x is not the event time window_end")
    wait_for("points on the chart", lambda: page.evaluate("window.sluiceConsole.chartPoints()"), timeout=10)
    check(page.locator("[data-testid=chart] canvas").count() == 1, "the chart has no canvas")
    # Points keep coming as windows close.
    points = page.evaluate("window.sluiceConsole.chartPoints()")
    wait_for("more points as windows close", lambda: page.evaluate("window.sluiceConsole.chartPoints()") > points, timeout=10)
    check(page.evaluate("window.sluiceConsole.streamState()") == "live", "the subscription is not live")

    step(f"{query_id}: listed among the queries with its figures")
    item = page.locator(f"[data-testid=query-item][data-query-id={query_id}]")
    item.wait_for()
    wait_for("status running in the list", lambda: item.locator("[data-testid=query-item-status]").text_content() == "running")
    wait_for("a rows/s figure", lambda: re.fullmatch(r"[\d.,]+ rows/s", item.locator("[data-testid=query-rate]").text_content()))
    wait_for("a watermark", lambda: re.fullmatch(r"wm \d\d:\d\d:\d\d(\.\d+)?", item.locator("[data-testid=query-watermark]").text_content()))
    check(re.fullmatch(r"late [\d,]+", item.locator("[data-testid=query-late]").text_content()), "no late rows figure")
    check("selected" in (item.get_attribute("class") or ""), "the running query is not marked selected")
    check(page.text_content("[data-testid=query-status]") == "running", "the query header does not say running")

    step(f"{query_id}: operator figures")
    operators = page.locator("[data-testid=operator-row]")
    wait_for("operator rows", lambda: operators.count() >= 3)
    names = operators.locator("td.operator-name").all_text_contents()
    check(any("window_aggregate" in n for n in names), f"no window_aggregate among the operators: {names}")
    check(any(n.startswith("source: weblog") for n in names), f"no weblog source among the operators: {names}")
    rows_in = [int(t.replace(",", "")) for t in operators.locator("[data-testid=operator-rows-in]").all_text_contents()]
    check(max(rows_in) > 0, f"operators report no rows in: {rows_in}")
    # Refreshed: the source's rows in grow.
    wait_for("operator figures refreshed", lambda: max(
        int(t.replace(",", "")) for t in operators.locator("[data-testid=operator-rows-in]").all_text_contents()) > max(rows_in), timeout=8)

    if args.screenshot:
        step(f"screenshot at {args.screenshot}")
        page.select_option("[data-testid=chart-y]", "requests")
        wait_for("a few windows on the chart", lambda: page.evaluate("window.sluiceConsole.chartPoints()") >= 15, timeout=15)
        page.locator("[data-testid=sql-editor]").blur()
        time.sleep(2.2)  # one more refresh of the figures
        page.screenshot(path=args.screenshot)

    for sql, line, column, token, said in BAD_STATEMENTS:
        step(f"error at line {line}, column {column} marked")
        page.fill("[data-testid=sql-editor]", sql)
        page.focus("[data-testid=sql-editor]")
        page.keyboard.press("Control+Enter")
        page.wait_for_selector("[data-testid=sql-error]", state="visible")
        where = f"line {line}, column {column}"
        wait_for(f"an error message naming {said!r} at {where}", lambda: (
            text if said in (text := page.text_content("[data-testid=sql-error-message]")) and where in text else None), timeout=10)
        marker = page.text_content("[data-testid=error-marker]").split("\n")
        source_line = sql.split("\n")[line - 1]
        check(marker[0] == f"{line} | {source_line}", f"the marker does not show line {line}: {marker}")
        check(len(marker) == 2 and marker[1].index("^") == len(f"{line} | ") + column - 1, f"the caret is misplaced: {marker}")
        check(page.text_content("[data-testid=error-line]") == str(line), "the gutter does not mark the line")
        check(page.text_content("[data-testid=error-highlight]") == token, "the editor does not highlight the token")
        selected = page.evaluate("() => { const e = document.getElementById('sql-editor'); return e.value.slice(e.selectionStart, e.selectionEnd); }")
        check(selected == token, f"the editor selects {selected!r}, not {token!r}")
    check(page.text_content("[data-testid=query-id]").strip() == query_id, "an error replaced the open query")

    step(f"{query_id}: cancelled with its Cancel button")
    item.locator("[data-testid=cancel-query]").click()
    wait_for("the query gone from GET /v1/queries (or cancelled)", lambda: (
        query_id not in (queries := api.queries()) or queries[query_id]["status"] == "cancelled"), timeout=10)
    item.wait_for(state="detached", timeout=5_000)
    check(page.evaluate("window.sluiceConsole.streamState()") == "cancelled", "the query view does not say cancelled")
    return query_id


def step(text):
    print(f"- {text}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="the server, e.g. http://127.0.0.1:7878")
    parser.add_argument("--screenshot", help="save a 1280x800 screenshot with rows and chart here")
    parser.add_argument("--token", help="the server's token: the page must ask for it")
    args = parser.parse_args()
    started = time.monotonic()
    try:
        run(args)
    except Failure as failure:
        print(f"console test FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
    except PlaywrightError as error:
        print(f"console test FAILED (browser): {error}", file=sys.stderr)
        sys.exit(1)
    print(f"console test passed ({time.monotonic() - started:.1f} s)")


if __name__ == "__main__":
    main()
