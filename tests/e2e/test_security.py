"""Security and abuse through the real server: tokens, API key, CORS, limits."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from minimlops.generate import write_csv
from tests.e2e.harness import MODEL_FIELDS_ONLY, Server

LAND = "buckets/my-data-landing-zone"
TOKEN, KEY = "admin-s3cret-token", "api-k3y-value"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("sec") / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 900, seed=2)
    srv = Server(home, MINIMLOPS_ADMIN_TOKEN=TOKEN, MINIMLOPS_API_KEY=KEY, MINIMLOPS_MAX_BATCH="10",
                 MINIMLOPS_MAX_BODY_BYTES="65536", MINIMLOPS_LOG_LEVEL="DEBUG")  # fmt: skip
    srv.http.headers["X-API-Key"] = KEY
    srv.wait_healthy()
    yield srv
    srv.stop()


def test_predict_needs_the_api_key_when_one_is_set(server: Server) -> None:
    r = server.http.post("/predict", json=MODEL_FIELDS_ONLY, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401
    assert server.http.post("/explain", json=MODEL_FIELDS_ONLY, headers={"X-API-Key": ""}).status_code == 401
    assert server.http.post("/predict", json=MODEL_FIELDS_ONLY).status_code == 200


def test_admin_needs_a_bearer_token_and_tokens_are_never_logged(server: Server) -> None:
    assert server.http.post("/train").status_code == 401
    r = server.http.post("/query", json={"sql": "SELECT 1 AS one"},
                         headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    assert r.status_code == 200 and r.json()["rows"] == [{"one": 1}]
    local = json.loads((server.home / "server.json").read_text())["token"]
    assert (server.home / "server.json").stat().st_mode & 0o077 == 0, "owner-only"
    output = server.output()
    assert TOKEN not in output and KEY not in output and local not in output


def test_admin_endpoints_never_answer_cross_origin(server: Server) -> None:
    pre = server.http.options("/models/rollback", headers={
        "Origin": "http://evil.example", "Access-Control-Request-Method": "POST"})  # fmt: skip
    assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
    r = server.http.post("/train", headers={"Authorization": f"Bearer {TOKEN}",
                                            "Origin": "http://evil.example"})  # fmt: skip
    assert r.status_code == 403
    public = server.http.options("/predict", headers={
        "Origin": "http://page.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-api-key"})  # fmt: skip
    assert public.status_code == 200 and public.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in public.headers


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"[" * 5000 + b"]" * 5000, 400, "invalid JSON"),
        (json.dumps([MODEL_FIELDS_ONLY] * 11).encode(), 413, "limit of 10"),
        (b"x" * 70_000, 413, "body larger"),
        (json.dumps({**MODEL_FIELDS_ONLY, "Age": "old"}).encode(), 422, "Age"),
        (json.dumps({**MODEL_FIELDS_ONLY, "Fare": -1}).encode(), 422, "Fare"),
        (json.dumps({**MODEL_FIELDS_ONLY, "Embarked": "X"}).encode(), 422, "Embarked"),
        (b'{"Pclass": Infinity}', 400, "invalid JSON"),
        (b'"just a string"', 422, ""),
        (b"[]", 422, "at least one"),
    ],
)  # fmt: skip
def test_abusive_requests_get_a_specific_4xx(server: Server, body: bytes, status: int, needle: str) -> None:
    r = server.http.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert needle in r.text


def test_no_code_is_ever_loaded_from_data() -> None:
    """No pickle or joblib loading anywhere in the package."""
    src = Path(__file__).resolve().parents[2] / "src" / "minimlops"
    for path in src.rglob("*.py"):
        text = path.read_text()
        imports = re.search(r"^\s*(import|from)\s+(pickle|joblib|cloudpickle|dill|marshal)\b",
                            text, re.MULTILINE)  # fmt: skip
        assert not imports and "pickle.load" not in text and "torch.load" not in text, path
