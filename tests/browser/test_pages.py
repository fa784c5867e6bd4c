"""The prediction page and the dashboard in a real headless Chromium (Debian's).

Each test saves a screenshot under artifacts/screenshots/ (a CI artefact).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minimlops.generate import write_csv
from tests.e2e.harness import MODEL_FIELDS_ONLY, Server

REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("CI must install chromium (apt-get install chromium)")
        pytest.skip("chromium is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("browser") / "home"
    landing = home / "buckets" / "my-data-landing-zone"
    landing.mkdir(parents=True)
    write_csv(landing / "passengers.csv", 900, seed=12)
    srv = Server(home)
    srv.wait_healthy()
    yield srv
    srv.stop()


@pytest.fixture
def page(browser):  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 1200, "height": 900}, locale="en-US")
    pg = context.new_page()
    yield pg
    context.close()


def shot(page, name: str) -> None:  # type: ignore[no-untyped-def]
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.smoke
def test_prediction_form_shows_probability_version_and_effects(server: Server, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.url + "/")
    page.select_option("#Pclass", "1")
    page.select_option("#Sex", "female")
    page.fill("#Age", "29")
    page.fill("#Fare", "80")
    page.fill("#Name", "Allen, Miss. Elisabeth Walton")
    with page.expect_response(lambda r: r.url.endswith("/explain")) as sent:
        page.click("#submit")
    explained = sent.value.json()  # what the page draws
    page.wait_for_selector("#result:not([hidden])")
    page.wait_for_selector("#effects li")
    probability = page.text_content("#probability") or ""
    assert probability.endswith("%") and 50 < float(probability[:-1]) <= 100
    assert page.text_content("#model-version") == "1"
    assert page.get_attribute("#model-version", "href") == "/models/1"  # its evaluation
    assert page.text_content("#verdict") == "Survives"
    # a bar per input column the model reads (Name through its derived features),
    # largest first, adding up from the base value to the log-odds
    bars = page.locator("#effects li").all_text_contents()
    assert len(bars) >= 5 and all(
        any(c in b for b in bars) for c in ("Pclass", "Sex", "Age", "Fare", "Name")
    )
    summary = page.text_content("#effects-summary") or ""
    assert summary.startswith("base value") and "log-odds" in summary, summary
    assert page.get_attribute("#effects-summary", "data-space") == "log-odds"
    assert "log-odds" in (page.text_content("#effects-note") or "")
    shown = [a for a in explained["attributions"] if a["attribution"] != 0]
    assert len(bars) == len(shown) and bars[0].startswith(shown[0]["label"])
    shot(page, "predict")


def test_the_typical_row_is_explained_and_a_change_moves_its_inputs_bar(
    server: Server, page
) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.url + "/")
    page.wait_for_selector("label[for=Age]")
    page.click("#submit")  # the form starts with the typical training row
    page.wait_for_selector("#effects-summary[data-space=log-odds]")
    # the typical row is not the average prediction: its inputs still move it
    page.wait_for_selector("#effects li")

    def age_bar() -> str:
        return next(b for b in page.locator("#effects li").all_text_contents() if "Age" in b)

    before = age_bar()
    page.fill("#Age", "4")
    page.click("#submit")
    page.wait_for_function(
        "[...document.querySelectorAll('#effects li')].some(li => li.textContent.includes('Age: 4'))"
    )
    after = age_bar()
    assert after.startswith("Age: 4") and after != before, (before, after)


def test_a_bad_value_shows_the_servers_message_at_the_field(server: Server, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(server.url + "/")
    page.wait_for_selector("#submit:not([disabled])")
    page.click("#submit")  # an answer first: the bad value must not leave it looking current
    page.wait_for_selector("#result:not([hidden])")
    assert page.is_hidden("#stale-note")
    page.fill("#Age", "-5")
    page.click("#submit")
    page.wait_for_function("document.getElementById('Age-error').textContent.length > 0")
    assert "greater than or equal to 0" in (page.text_content("#Age-error") or "")
    assert page.get_attribute("#Age", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "Age"
    # the earlier answer is dimmed and said to be out of date until a new one comes
    assert page.is_visible("#stale-note") and "Out of date" in (
        page.text_content("#stale-note") or ""
    )
    assert (
        page.evaluate("getComputedStyle(document.getElementById('verdict').parentElement).opacity")
        == "0.4"
    )
    shot(page, "predict-error")
    page.fill("#Age", "30")
    page.click("#submit")
    page.wait_for_selector("#stale-note", state="hidden")


def test_a_value_far_outside_what_the_model_learnt_is_answered_with_a_warning(
    server: Server, page
) -> None:  # type: ignore[no-untyped-def]
    """The answer's warnings are on the page: a fare far above every fare the
    model learnt from is answered, and said; a usual fare says nothing."""
    page.goto(server.url + "/")
    page.wait_for_selector("#submit:not([disabled])")
    page.fill("#Fare", "5000")
    page.click("#submit")
    page.wait_for_selector("#answer-warnings li")
    said = page.locator("#answer-warnings li").all_text_contents()
    assert (
        len(said) == 1 and "Fare 5000 is far above the values the model was trained on" in said[0]
    )
    assert page.is_visible("#answer-warnings")
    shot(page, "predict-far")
    page.fill("#Fare", "30")
    page.click("#submit")
    page.wait_for_selector("#answer-warnings", state="hidden")
    assert page.locator("#answer-warnings li").count() == 0


def test_the_form_works_from_the_keyboard_on_a_phone_screen(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = context.new_page()
    page.goto(server.url + "/")
    page.wait_for_selector("label[for=Cabin]")  # the form is built from /project once it loads
    for field in (
        "Pclass",
        "Sex",
        "Age",
        "SibSp",
        "Parch",
        "Fare",
        "Embarked",
        "Name",
        "Ticket",
        "Cabin",
    ):
        assert page.locator(f"label[for={field}]").count() == 1
    page.focus("#Age")
    page.keyboard.press("Control+a")
    page.keyboard.type("4")
    page.keyboard.press("Enter")
    page.wait_for_selector("#result:not([hidden])")
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "no horizontal scrolling on a phone"
    shot(page, "predict-phone")
    context.close()


def test_dashboard_shows_ingestion_training_and_a_chart(server: Server, page) -> None:  # type: ignore[no-untyped-def]
    for _ in range(5):
        assert server.http.post("/predict", json=MODEL_FIELDS_ONLY).status_code == 200
    # and 25 more: an estimate needs 30 of a version's predictions
    assert server.http.post("/predict", json=[MODEL_FIELDS_ONLY] * 25).status_code == 200
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#timeline tr")
    page.wait_for_function("document.getElementById('chart-predictions').dataset.points >= 1")
    kinds = page.locator("#timeline td.kind").all_text_contents()
    assert "ingested" in kinds and "trained" in kinds and "promoted" in kinds
    assert page.locator("#chart-predictions canvas").count() == 1
    assert "version 1" in (page.text_content("#champion") or "")
    assert "★ champion" in (page.text_content("#models") or "")
    assert "Alerts: off" in (page.text_content("#alerts") or "")  # and how to turn them on
    assert "estimated" in (page.text_content("#models") or "")  # accuracy before labels
    shot(page, "dashboard")


def test_a_page_on_another_origin_can_call_predict(server: Server, page, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "index.html").write_text(f"""<!doctype html><html><body><pre id="out">waiting</pre>
<script>
fetch("{server.url}/predict", {{method: "POST", headers: {{"Content-Type": "application/json"}},
  body: JSON.stringify({{"Pclass": 3, "Sex": "male", "Age": 22, "SibSp": 1, "Parch": 0,
                         "Fare": 7.25, "Embarked": "S"}})}})
  .then(r => r.json()).then(j => document.getElementById("out").textContent = JSON.stringify(j))
  .catch(e => document.getElementById("out").textContent = "failed: " + e);
</script></body></html>""")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        page.goto(f"http://127.0.0.1:{other.server_port}/index.html")
        page.wait_for_function("document.getElementById('out').textContent !== 'waiting'")
        text = page.text_content("#out") or ""
        assert '"model_version":"1"' in text and '"uuid"' in text, text
        shot(page, "cors-other-origin")
    finally:
        other.shutdown()


def test_the_live_chart_follows_the_versions_table_when_labels_arrive(server: Server, page) -> None:  # type: ignore[no-untyped-def]
    """The versions table reads /models every 2 s, the chart /monitoring every
    30 s: labels the table counts must reach the chart within a round or two,
    not leave it saying no prediction has a true label."""
    from tests.e2e.test_retraining import wrong_labels

    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#models tr")
    assert page.is_visible("#live-accuracy-na")  # no labels yet in this home
    answers = server.http.post("/predict", json=[MODEL_FIELDS_ONLY] * 20).json()["predictions"]
    assert server.http.post("/feedback", json=wrong_labels(answers[:10])).status_code == 200
    page.wait_for_function(
        "[...document.querySelectorAll('#models tr')].some((r) => r.textContent.includes('(10 labelled, '))",
        timeout=10_000,
    )
    page.wait_for_selector("#live-accuracy canvas", timeout=6_000)
    assert page.is_hidden("#live-accuracy-na")


def test_dashboard_shows_drift_and_live_accuracy_once_there_is_data(server: Server, page) -> None:  # type: ignore[no-untyped-def]
    from tests.e2e.test_retraining import shifted, wrong_labels

    answers = server.http.post("/predict", json=shifted(150, seed=3)).json()["predictions"]
    assert server.http.post("/feedback", json=wrong_labels(answers[:40])).status_code == 200
    # the seven raw features, and the derived ones read from text drift cannot compare
    # itself (title from the name, deck from the cabin; not a log of the fare, which
    # drifts when the fare does)
    compared = server.http.get("/monitoring").json()["drift"]["features"]
    names = {f["feature"] for f in compared}
    assert {"title", "deck"} <= names and not names & {"log_fare", "family_size"}, names
    page.goto(server.url + "/dashboard")
    page.wait_for_function(f"document.querySelectorAll('#drift tr').length === {len(compared)}")
    page.wait_for_selector("#live-accuracy canvas")
    drift = page.locator("#drift").text_content() or ""
    assert "Pclass" in drift and "drift" in drift
    assert "% of attributions" in drift  # which drifted features the model uses, by what
    assert page.is_hidden("#live-accuracy-na")
    shot(page, "dashboard-monitoring")


def test_predictions_asked_after_their_row_landed_are_left_out_and_said(
    server: Server, page
) -> None:  # type: ignore[no-untyped-def]
    """Passengers 1-3 landed in the training file: asked about again and
    labelled, they count in no live figure, and both pages say how many."""
    from tests.e2e.test_retraining import wrong_labels

    before = {
        v["version"]: v["labelled"] for v in server.http.get("/monitoring").json()["versions"]
    }
    rows = [{**MODEL_FIELDS_ONLY, "PassengerId": i} for i in (1, 2, 3)]
    answers = server.http.post("/predict", json=rows).json()["predictions"]
    assert server.http.post("/feedback", json=wrong_labels(answers)).status_code == 200
    version = answers[0]["model_version"]
    live = {v["version"]: v for v in server.http.get("/monitoring").json()["versions"]}[version]
    assert live["labelled"] == before.get(version, 0) and live["predicted_after_landing"] == 3
    page.goto(server.url + "/dashboard")
    page.wait_for_function(
        "[...document.querySelectorAll('#models tr')].some((r) => "
        "r.textContent.includes('3 more made after their row had landed, left out'))",
        timeout=10_000,
    )
    page.goto(server.url + f"/models/{version}")
    page.wait_for_function(
        "(document.getElementById('live').textContent || '')"
        ".includes('3 more made after their row had landed, left out')",
        timeout=10_000,
    )


@pytest.fixture(scope="module", params=["wine", "diabetes"])
def other_server(request, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Server]]:
    home = tmp_path_factory.mktemp(request.param) / "home"
    srv = Server(home, MINIMLOPS_PROJECT=request.param)
    srv.wait_healthy(120)
    yield request.param, srv
    srv.stop()


def test_the_page_is_built_from_the_project_and_answers_for_its_task(other_server, page) -> None:  # type: ignore[no-untyped-def]
    from tests import projects as shapes

    name, server = other_server
    p = shapes.load(name)
    page.goto(server.url + "/")
    page.wait_for_selector("#fields label")
    inputs = [c for c in p.input_columns if c != p.key]
    assert page.locator("#fields label").count() == len(inputs)
    for c in inputs:  # a label per column, from its description
        assert p.column(c).description in (page.text_content(f"label[for={c}]") or "")
    if name == "diabetes":
        assert page.locator("#sex option").count() == 2  # allowed values: a select
        assert page.get_attribute("#bmi", "min") == "10"  # the range on the input
    page.click("#submit")  # the defaults are a typical training row
    page.wait_for_selector("#result:not([hidden])")
    space = "logit" if p.task == "multiclass" else "value"
    page.wait_for_selector(f"#effects-summary[data-space={space}]")
    assert page.locator("#effects li").count() >= 1
    if p.task == "multiclass":
        assert page.locator("#classes li").count() == 3
        assert (page.text_content("#verdict") or "").startswith("cultivar: cultivar_")
        assert page.is_hidden("#gauge")
    else:
        value = float(page.text_content("#probability") or "nan")
        assert 0 <= value <= 1000 and page.is_hidden("#gauge") and page.is_hidden("#classes")
        assert "predicted progression" in (page.text_content("#probability-label") or "")
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#models tr")
    head = page.text_content("#models-head") or ""
    assert p.primary_metric.replace("_", " ") in head
    # every metric column says which rows it is on (a bare "mae" did not)
    cells = [c.strip() for c in page.locator("#models-head th").all_text_contents()]
    assert [c for c in cells[2:-3] if "on its" not in c] == [], cells
    shot(page, f"dashboard-{name}")
    page.goto(server.url + "/")
    page.wait_for_selector("#fields label")
    first, second = [c for c in inputs if p.column(c).type == "float"][:2]
    page.fill(f"#{first}", str((p.column(first).max or 10) * 0.8))  # away from the typical row
    page.fill(f"#{second}", str((p.column(second).min or 0) + 0.1))
    page.click("#submit")
    page.wait_for_selector("#effects li")
    shot(page, f"predict-{name}")


def _open_evaluation(page, server: Server) -> None:  # type: ignore[no-untyped-def]
    """From the dashboard's version table to the champion's evaluation page."""
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#models tr a")
    page.click("#models tr a")
    page.wait_for_url("**/models/*")
    page.wait_for_function("document.body && document.body.dataset.ready !== undefined")
    assert page.get_attribute("body", "data-ready") == "true", page.text_content("#failure")


def _drawn(page, chart_id: str) -> int:  # type: ignore[no-untyped-def]
    assert page.locator(f"#{chart_id} canvas").count() == 1, chart_id
    return int(page.get_attribute(f"#{chart_id}", "data-points") or 0)


def test_the_evaluation_page_of_a_binary_version_draws_its_curves(server: Server, page) -> None:  # type: ignore[no-untyped-def]
    _open_evaluation(page, server)  # the newest version (earlier tests may have trained more)
    version = page.url.rsplit("/", 1)[-1]
    data = server.http.get(f"/models/{version}").json()
    assert f"Version {version}" in (page.text_content("#title") or "")
    for chart in ("roc", "precision-recall", "reliability"):
        assert _drawn(page, chart) >= 2
    assert page.get_attribute("#confusion", "data-cells") == "4"
    cells = [int(x) for x in page.locator("#confusion td").all_text_contents()]
    assert sum(cells) == data["metrics"]["rows"] == data["report"]["rows"]
    assert int(page.get_attribute("#importance", "data-columns") or 0) >= 5  # raw columns
    assert "Sex" in (page.text_content("#importance") or "")
    # beside it, mean |attribution| on the same rows, in log-odds
    assert int(page.get_attribute("#attributions", "data-columns") or 0) >= 5
    assert "Sex" in (page.text_content("#attributions") or "")
    assert "log-odds" in (page.text_content("#attributions-note") or "")
    assert data["report"]["attributions"]["space"] == "log-odds"
    assert int(page.get_attribute("#leaderboard", "data-candidates") or 0) >= 5
    assert "★ chosen" in (page.text_content("#leaderboard") or "")
    # a forest's figures at random folds are out-of-bag, and its row says so
    # (the tests' short budget may skip the forests: then there is none to show)
    forests = [
        e
        for e in data["selection"]["leaderboard"]
        if e["family"] == "random_forest" and e.get("status") == "scored"
    ]
    for e in forests:
        assert e.get("estimate") == "out-of-bag", e
        assert f"{e['name']} (out-of-bag)" in (page.text_content("#leaderboard") or "")
    assert "s budget (" in (page.text_content("#selection-note") or "")
    assert "accuracy" in (page.text_content("#metrics") or "")
    # the model that serves, on TEST, in the last column
    assert page.text_content("#test-head") == "TEST, served fit"
    cells = page.locator("#metrics tr:has(td:text-is('accuracy')) td")
    shown = cells.nth(cells.count() - 1).text_content()
    assert shown == f"{data['test']['accuracy']:.3f}", shown
    # how the rows were split, next to the figures
    assert "split at random by the row key" in (page.text_content("#split") or "")
    paired = page.text_content("#paired") or ""
    assert ("no champion to compare with" in paired) if version == "1" else ("McNemar" in paired)
    shot(page, "model-binary")


def test_the_evaluation_page_follows_the_task(other_server, page) -> None:  # type: ignore[no-untyped-def]
    name, server = other_server
    _open_evaluation(page, server)
    if name == "wine":  # multiclass: a 3x3 confusion matrix, per-class precision and recall
        assert page.get_attribute("#confusion", "data-cells") == "9"
        assert _drawn(page, "per-class") == 3
        # the class axis: one tick per class, named, each bar whole inside the chart
        axis = page.evaluate(
            "() => { const u = plots['per-class'], a = u.axes[0];"
            " const at = a.splits(u, 0, u.scales.x.min, u.scales.x.max);"
            " return { at, names: a.values(u, at), min: u.scales.x.min, max: u.scales.x.max }; }"
        )
        classes = [str(c) for c in server.http.get("/project").json()["classes"]]
        assert axis["at"] == [0, 1, 2] and sorted(axis["names"]) == sorted(classes), axis
        assert axis["min"] <= -0.45 and axis["max"] >= 2.45, axis
        # the table under it names each class as the project does, no index before it
        named = page.locator(
            "table[aria-label='precision and recall per class'] th"
        ).all_text_contents()
        assert named == classes, named
        assert page.locator("#roc").count() == 0
    else:  # regression: predicted against actual, residuals, the errors' distribution
        assert _drawn(page, "predicted-actual") >= 20
        assert _drawn(page, "residuals") >= 20
        assert _drawn(page, "errors") == 20
        assert page.locator("#confusion").count() == 0
        assert "rmse" in (page.text_content("#metrics") or "")
    assert int(page.get_attribute("#importance", "data-columns") or 0) >= 4
    assert int(page.get_attribute("#attributions", "data-columns") or 0) >= 4
    shot(page, f"model-{'multiclass' if name == 'wine' else 'regression'}")


def test_an_unknown_version_says_so(server: Server, page) -> None:  # type: ignore[no-untyped-def]
    answer = page.goto(server.url + "/models/999")
    assert answer is not None and answer.status == 404  # the page, with the status that says so
    page.wait_for_function("document.body && document.body.dataset.ready !== undefined")
    assert "999" in (page.text_content("#failure") or "") and page.is_visible("#failure")
    assert page.goto(server.url + "/models/1").status == 200


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """MINIMLOPS_PUBLIC_ROUTES on: the pages load, their data needs the API key."""
    home = tmp_path_factory.mktemp("keyed") / "home"
    landing = home / "buckets" / "my-data-landing-zone"
    landing.mkdir(parents=True)
    write_csv(landing / "passengers.csv", 900, seed=12)
    srv = Server(
        home,
        MINIMLOPS_API_KEY="page-k3y",
        MINIMLOPS_PUBLIC_ROUTES="GET /,GET /dashboard,GET /static/*,GET /healthz",
    )
    srv.wait_healthy()
    yield srv
    srv.stop()


def test_a_401_asks_for_the_api_key_inline_and_the_pages_work_with_it(
    keyed_server: Server, page
) -> None:  # type: ignore[no-untyped-def]
    page.goto(keyed_server.url + "/")
    page.wait_for_selector("#key-prompt label[for=api-key]")  # GET /project answered 401
    assert page.evaluate("document.activeElement.id") == "api-key"
    assert "X-API-Key" in (page.text_content("#key-prompt [role=alert]") or "")
    page.fill("#api-key", "not-the-key")
    page.keyboard.press("Enter")
    page.wait_for_function(
        "(document.querySelector('#key-prompt [role=alert]') || {}).textContent"
        "?.startsWith('that key was refused')"
    )
    page.fill("#api-key", "page-k3y")
    page.click("#key-prompt button")
    page.wait_for_selector("label[for=Pclass]")  # the form, built from /project
    assert page.locator("#key-prompt").count() == 0
    page.click("#submit")
    page.wait_for_selector("#effects-summary[data-space]")  # /predict and /explain sent the key
    assert page.evaluate("sessionStorage.getItem('minimlops-api-key')") == "page-k3y"
    shot(page, "predict-api-key")
    page.goto(keyed_server.url + "/dashboard")  # same tab: the key is kept, no prompt
    page.wait_for_selector("#timeline tr")
    assert page.locator("#key-prompt").count() == 0


class _Recorder(http.server.BaseHTTPRequestHandler):
    """A loopback proxy for GETs in front of a server, noting every path asked
    for: the browser asks for /favicon.ico itself, out of the page's sight."""

    target = ""
    paths: list[str] = []

    def do_GET(self) -> None:
        import httpx

        self.paths.append(self.path)
        if self.path == "/no-icon":  # the control: a page without an icon
            body, status, kind = b"<!doctype html><title>no icon</title>", 200, "text/html"
        else:
            r = httpx.get(
                self.target + self.path, headers={"Accept": self.headers.get("Accept", "*/*")}
            )
            body, status, kind = r.content, r.status_code, r.headers.get("content-type", "")
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_every_page_has_an_icon_so_no_favicon_request_404s(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    recorder = type("Recorder", (_Recorder,), {"target": server.url, "paths": []})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), recorder)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{proxy.server_port}"
    context = browser.new_context()
    try:
        page = context.new_page()
        for path, ready in (
            ("/", "#fields label"),
            ("/dashboard", "#timeline tr"),
            ("/models/1", "body[data-ready]"),
        ):
            page.goto(base + path)
            page.wait_for_selector(ready)
            icon = page.get_attribute("link[rel=icon]", "href") or ""
            assert icon.startswith("data:image/svg+xml,"), path
        page.wait_for_timeout(1000)
        assert "/favicon.ico" not in recorder.paths, recorder.paths
        page.goto(base + "/no-icon")  # the control: this browser does ask when a page has no icon
        deadline = time.monotonic() + 10
        while "/favicon.ico" not in recorder.paths and time.monotonic() < deadline:
            time.sleep(0.1)
        assert "/favicon.ico" in recorder.paths, (
            "the browser no longer asks for /favicon.ico: the test sees nothing"
        )
    finally:
        context.close()
        proxy.shutdown()


def test_the_timeline_shows_a_landed_file_by_its_local_path(server: Server, page) -> None:  # type: ignore[no-untyped-def]
    (landed,) = [
        e
        for e in server.http.get("/events").json()
        if e["kind"] == "ingested" and e["subject"].endswith("passengers.csv")
    ]
    assert (
        landed["subject"] == "gs://my-data-landing-zone/passengers.csv"
    )  # the ledger's id, unchanged
    assert (
        Path(landed["where"]).expanduser()
        == server.home / "buckets" / "my-data-landing-zone" / "passengers.csv"
    )
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#timeline td.kind.ingested")
    what = page.locator("#timeline tr:has(td.kind.ingested) td").nth(2)
    assert what.text_content() == landed["where"]
    assert what.get_attribute("title") == landed["subject"]  # the id, on hover
    assert "gs://" not in (page.text_content("#timeline") or "")


def test_a_rejected_files_report_link_stands_apart_from_its_message(server: Server, page) -> None:  # type: ignore[no-untyped-def]
    said = "missing columns ['Age'] (required: add them to the file)"
    rejected = {
        "at": "2026-01-01T00:00:00+00:00",
        "kind": "rejected",
        "subject": "gs://my-data-landing-zone/bad.csv",
        "where": "/data/bad.csv",
        "detail": said,
        "report": "/files/bad.csv.report.json",
    }
    _routed(page, "**/events*", lambda events: [rejected, *events])
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#timeline td.kind.rejected")
    cell = page.locator("#timeline tr:has(td.kind.rejected) td").nth(3)
    assert cell.text_content() == f"{said} · the rows' report (JSON)"
    assert cell.locator("a").get_attribute("href") == rejected["report"]


def _long_drift(monitoring: dict) -> dict:  # type: ignore[type-arg]
    """The monitoring answer with seven drifting features of long names."""
    names = [
        "household_income_reported_last_twelve_months",
        "Embarked",
        "x",
        "a-name-with-dashes-and-no-spaces-at-all-from-an-export",
        "SibSp",
        "Parch",
        "Fare",
    ]
    features = [
        {
            "feature": n,
            "kind": "numeric",
            "psi": 0.000925 * 10**i,
            "status": ["ok", "warn", "drift"][i % 3],
            # and what the model makes of each: a long note under the name
            "importance_share": 0.01 * i,
            "matters": i > 4,
            **({"importance_with": ["Name", "Sex", "Age", "SibSp", "Parch"]} if i % 2 else {}),
        }
        for i, n in enumerate(names)
    ]
    drift = {
        "status": "ok",
        "features": features,
        "champion": "1",
        "reference_rows": 624,
        "window": {"rows": 500, "limit": 500, "hours": None},
        "thresholds": {"psi_warn": 0.1, "psi_drift": 0.25},
    }
    return {**monitoring, "drift": drift}


def _routed(page, path: str, change) -> None:  # type: ignore[no-untyped-def]
    """The page's fetches of ``path`` answered by the server, then changed."""

    def handle(route) -> None:  # type: ignore[no-untyped-def]
        if route.request.resource_type != "fetch":
            route.continue_()
            return
        answer = route.fetch()
        route.fulfill(response=answer, json=change(answer.json()))

    page.route(path, handle)


@pytest.mark.parametrize("width", [1200, 390])
def test_a_wide_drift_table_stays_inside_its_card(server: Server, browser, width: int) -> None:  # type: ignore[no-untyped-def]
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="en-US")
    page = context.new_page()
    _routed(page, "**/monitoring", _long_drift)
    page.goto(server.url + "/dashboard")
    page.wait_for_function("document.querySelectorAll('#drift tr').length === 7")
    page.wait_for_selector("#timeline tr")
    cards = page.evaluate("""[...document.querySelectorAll('section')].map(s => {
        const r = s.getBoundingClientRect();
        const out = [...s.querySelectorAll('table')].filter(t => {
          const box = t.closest('.scroll') || t, b = box.getBoundingClientRect();
          return b.right > r.right + 0.5 || b.left < r.left - 0.5;
        }).length;
        return [s.querySelector('h2').textContent, s.scrollWidth - s.clientWidth, out];
      })""")
    for title, overflow, tables_out in cards:
        assert overflow <= 0 and tables_out == 0, (title, overflow, tables_out)
    drift = page.evaluate("""(() => { const s = document.querySelector('#drift').closest('section'),
        t = document.querySelector('#drift').closest('table');
        return [t.getBoundingClientRect().right, s.getBoundingClientRect().right]; })()""")
    assert drift[0] <= drift[1], "the drift table ends inside its card"
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    shot(page, f"dashboard-drift-{width}")
    context.close()


def _long_ensemble(version: dict) -> dict:  # type: ignore[type-arg]
    """The version's leaderboard with a chosen ensemble of four long-named members."""
    board = version["selection"]["leaderboard"]
    metric = version["selection"]["metric"]
    for entry in board:
        entry.pop("chosen", None)
    members = ["lightgbm_regularised", "random_forest_deep", "logistic_regression_balanced"]
    board.append(
        {
            "name": "ensemble",
            "family": "ensemble",
            "status": "scored",
            "chosen": True,
            "seconds": 4.2,
            "cv": {metric: 0.4321},
            "members": [
                {"name": m, "weight": w}
                for m, w in zip([*members, "lightgbm_large"], [0.4, 0.28, 0.2, 0.12], strict=True)
            ],
        }
    )
    return version


def test_a_chosen_ensembles_long_name_wraps_inside_the_leaderboard(server: Server, browser) -> None:  # type: ignore[no-untyped-def]
    """The chosen row's text does not wrap (it is marked), and an ensemble's
    name of four members pushed the figures and the mark out of sight behind
    a scroll bar: the name wraps, and the table fits its card."""
    context = browser.new_context(viewport={"width": 1300, "height": 1000}, locale="en-US")
    page = context.new_page()
    _routed(page, "**/models/1", _long_ensemble)
    page.goto(server.url + "/models/1")
    page.wait_for_selector("#leaderboard tr[data-ensemble]")
    overflow = page.evaluate(
        "(() => { const s = document.querySelector('#leaderboard').closest('.scroll');"
        " return s.scrollWidth - s.clientWidth; })()"
    )
    assert overflow <= 0, overflow
    chosen = page.text_content("#leaderboard tr.promoted") or ""
    assert chosen.startswith("ensemble of 0.40 × lightgbm_regularised") and "★ chosen" in chosen
    shot(page, "model-long-ensemble")
    context.close()


def _fits(page, plot: str) -> bool:  # type: ignore[no-untyped-def]
    """The y axis of a uPlot is as wide as its widest tick label needs."""
    return bool(
        page.evaluate(f"""(() => {{ const u = {plot}, a = u.axes[1];
        u.ctx.font = a.font[0];
        const widest = Math.max(...a._values.map(v => u.ctx.measureText(v).width)) / devicePixelRatio;
        return a._size >= widest + a.ticks.size + a.gap; }})()""")
    )


def test_a_regressions_live_chart_names_its_metric_and_one_point_gets_its_day(
    other_server, page
) -> None:  # type: ignore[no-untyped-def]
    name, server = other_server
    if name != "diabetes":
        pytest.skip("a regression's chart")
    at = 1796726400 + 10 * 3600 + 31 * 60  # 2026-12-09 10:31 UTC: one point, one December day
    point = {
        "version": "1",
        "at": at,
        "labelled": 40,
        "accuracy": None,
        "mae": 21345.6,
        "rmse": 25001.2,
    }
    _routed(page, "**/monitoring", lambda m: {**m, "accuracy_over_time": [point]})
    page.goto(server.url + "/dashboard")
    page.wait_for_selector("#live-accuracy canvas")
    label = page.get_attribute("#live-accuracy", "aria-label") or ""
    assert "MAE" in label and "accuracy" not in label, label
    assert "MAE" in (page.text_content("#live-title") or "")
    assert page.get_attribute("#live-accuracy", "data-metric") == "mae"
    x = page.evaluate(
        """(at) => { const s = charts['live-accuracy'].scales.x, day = new Date(at * 1000);
        day.setHours(0, 0, 0, 0);
        return [s.min, s.max, day.getTime() / 1000, charts['live-accuracy'].axes[0]._values]; }""",
        at,
    )
    assert x[0] == x[2] and 23 * 3600 <= x[1] - x[0] <= 25 * 3600, x  # its day, not 2027-2029
    assert not any(y in v for v in x[3] for y in ("2027", "2028", "2029")), x[3]
    ticks = page.evaluate("charts['live-accuracy'].axes[1]._values")
    assert any("," in t for t in ticks), ticks  # 20,000, not 2e4
    assert _fits(page, "charts['live-accuracy']"), "the y axis fits its labels"
    shot(page, "dashboard-live-mae")


def _large(version: dict) -> dict:  # type: ignore[type-arg]
    """A diabetes version as if it priced houses: its errors 4,500 times larger."""
    k = 4500.0
    report = version["report"]
    for metric in ("mae", "rmse"):
        for part in (
            version["metrics"],
            version["baseline"]["task"],
            version.get("evaluation") or {},
        ):
            part[metric] *= k
        report["intervals"][metric] = [x * k for x in report["intervals"][metric]]
        for entry in version["selection"]["leaderboard"]:
            if metric in (entry.get("cv") or {}):
                entry["cv"][metric] *= k
    for plot in ("scatter", "residuals"):
        report[plot]["points"] = [[x * k, y * k] for x, y in report[plot]["points"]]
    report["errors"]["edges"] = [x * k for x in report["errors"]["edges"]]
    return version


def test_the_evaluation_page_writes_large_regression_values_readably(other_server, page) -> None:  # type: ignore[no-untyped-def]
    name, server = other_server
    if name != "diabetes":
        pytest.skip("a regression's page")
    data = _large(server.http.get("/models/1").json())
    _routed(page, "**/models/1", _large)
    page.goto(server.url + "/models/1")
    page.wait_for_function("document.body.dataset.ready !== undefined")
    metrics, board = page.text_content("#metrics") or "", page.text_content("#leaderboard") or ""
    assert "e+" not in metrics and "e+" not in board, metrics
    mae = page.locator("#metrics tr:has(td:text-is('mae')) td").nth(1).text_content()
    assert mae == f"{round(data['metrics']['mae']):,}", mae  # 198,085
    assert (
        page.locator("#metrics tr:has(td:text-is('r2')) td").nth(1).text_content()
        == f"{data['metrics']['r2']:.3f}"
    )
    for plot in ("predicted-actual", "residuals", "errors"):
        assert _fits(page, f"plots['{plot}']"), plot
    shot(page, "model-regression-large")


@pytest.fixture(scope="module")
def churn_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The churn project: "region" is a category without allowed values."""
    srv = Server(tmp_path_factory.mktemp("churn") / "home", MINIMLOPS_PROJECT="churn")
    srv.wait_healthy(120)
    yield srv
    srv.stop()


def test_a_free_category_offers_the_values_seen_and_takes_another(
    churn_server: Server, page
) -> None:  # type: ignore[no-untyped-def]
    region = next(
        c for c in churn_server.http.get("/project").json()["columns"] if c["name"] == "region"
    )
    assert region["allowed"] is None and len(region["categories"]) >= 2
    page.goto(churn_server.url + "/")
    page.wait_for_selector("#fields label")
    options = page.locator("#region option").all_text_contents()
    assert options == [
        "unknown",
        *region["categories"],
        "another value…",
    ]  # optional: "unknown" first
    assert page.input_value("#region") == region["default"]  # the typical row's
    assert page.is_hidden("#region-other")
    assert (
        "another value…" not in page.locator("#plan option").all_text_contents()
    )  # allowed values only
    page.select_option("#region", label="another value…")
    assert (
        page.is_visible("#region-other")
        and page.evaluate("document.activeElement.id") == "region-other"
    )
    page.fill("#region-other", "region_new")  # the server takes an unseen category
    page.click("#submit")
    page.wait_for_selector("#effects li")
    # a bar, or named among the inputs with no effect (a model may not use it)
    said = (page.text_content("#effects") or "") + (page.text_content("#effects-summary") or "")
    assert "region: region_new" in said or "region = region_new" in said, said
    assert page.is_hidden("#form-error") or not page.text_content("#form-error")
    page.select_option("#region", region["categories"][0])
    assert page.is_hidden("#region-other")
    shot(page, "predict-category")


def test_a_second_versions_row_shows_the_champion_on_the_same_rows(tmp_path: Path, page) -> None:  # type: ignore[no-untyped-def]
    """Each version's figure is on its own VALIDATION rows: beside it, what the
    gate compared it with, so a promotion never looks backwards."""
    home = tmp_path / "home"
    landing = home / "buckets" / "my-data-landing-zone"
    landing.mkdir(parents=True)
    write_csv(landing / "passengers.csv", 600, seed=5)
    srv = Server(home)
    try:
        srv.wait_healthy()
        write_csv(landing / "more.csv", 300, seed=6)  # VALIDATION moves with new rows
        srv.wait_for(
            lambda: len(srv.http.get("/models").json()["versions"]) == 2,
            what="version 2",
            timeout=120,
        )
        second = srv.http.get("/models").json()["versions"][1]
        theirs = second["champion_compared"]["evaluation"]["accuracy"]  # the primary metric
        assert second["champion_compared"]["version"] == "1"
        page.goto(srv.url + "/dashboard")
        page.wait_for_selector("#models tr:nth-child(2)")
        head = page.text_content("#models-head") or ""
        assert "accuracy on its VALIDATION" in head and "accuracy on its TEST, served fit" in head
        newest = page.locator("#models tr").first.text_content() or ""
        # the served model's TEST figure beside its VALIDATION one
        shown = page.locator("#models tr").first.locator("td.test")
        assert shown.text_content() == f"{second['test']['accuracy']:.3f}"
        assert shown.get_attribute("title") == f"on {int(second['test']['rows']):,} TEST rows"
        mine = second["evaluation"]["accuracy"]  # VALIDATION and labelled, as the champion's
        said = f"on the gate's rows: {mine:.3f} against champion 1's {theirs:.3f}"
        assert newest.startswith("2") and said in newest, newest
        oldest = page.locator("#models tr").nth(1).text_content() or ""
        assert "gate's rows" not in oldest  # the first version had no champion to meet
        shot(page, "dashboard-two-versions")
    finally:
        srv.stop()


ORDERS_TOML = """
name = "orders"
key = "order_id"
target = "amount"
task = "regression"

[split]
strategy = "time"
column = "order_date"

[[columns]]
name = "order_id"
type = "string"
required = true

[[columns]]
name = "customer_id"
type = "string"

[[columns]]
name = "order_date"
type = "date"

[[columns]]
name = "items"
type = "integer"

[[columns]]
name = "promo"
type = "float"

[[columns]]
name = "flag"
type = "string"

[[columns]]
name = "amount"
type = "float"
required = true
"""


def test_a_comparison_on_part_of_the_rows_is_said_on_the_evaluation_page(
    tmp_path: Path, page
) -> None:  # type: ignore[no-untyped-def]
    """By time, older rows landing move VALIDATION onto rows the champion
    learned from: the page says the gate compared the rows after them, with
    both figures there."""
    from tests.unit.test_splits import orders_csv

    proj = tmp_path / "orders"
    proj.mkdir()
    (proj / "project.toml").write_text(ORDERS_TOML)
    home = tmp_path / "home"
    landing = home / "buckets" / "my-data-landing-zone"
    landing.mkdir(parents=True)
    header, *lines = orders_csv().decode().splitlines()
    (landing / "newer.csv").write_text("\n".join([header, *lines[300:], ""]))
    srv = Server(home, MINIMLOPS_PROJECT=str(proj))
    try:
        srv.wait_healthy(120)
        (landing / "older.csv").write_text("\n".join([header, *lines[:300], ""]))
        srv.wait_for(
            lambda: len(srv.http.get("/models").json()["versions"]) == 2,
            what="version 2",
            timeout=120,
        )
        cmp = srv.http.get("/models/2").json()["champion_compared"]
        assert cmp["challenger"]["rows"] == cmp["evaluation"]["rows"] >= 20, cmp
        page.goto(srv.url + "/models/2")
        page.wait_for_selector("#compared-part:not([hidden])")
        said = page.text_content("#compared-part") or ""
        assert said.startswith(f"compared on the {int(cmp['evaluation']['rows'])} evaluation rows")
        assert f"{cmp['challenger']['rmse']:.3f} for this version against" in said, said
        assert f"{cmp['evaluation']['rmse']:.3f} for champion 1" in said, said
        # by time: the folds are in time order, and a date's importance is
        # said to be blind to its trend (VALIDATION is one short window)
        window = srv.http.get("/models/2").json()["training"]["split"]["validation"]
        page.wait_for_function("document.querySelector('#importance-note').textContent")
        assert "-fold cross-validation in time order" in (
            page.text_content("#selection-note") or ""
        )
        note = page.text_content("#importance-note") or ""
        assert f"VALIDATION's window ({window['from']} to {window['to']})" in note, note
        shot(page, "model-compared-part")
    finally:
        srv.stop()
