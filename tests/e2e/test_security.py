"""Security and abuse through the real server: tokens, API key, CORS, limits."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from minimlops.config import ConfigError
from minimlops.entrypoints.http.fastpath import FastPredict
from minimlops.entrypoints.http.security import Access, Credentials, PublicCORS, RequireCredential
from minimlops.generate import write_csv
from tests.e2e.harness import MODEL_FIELDS_ONLY, Server, cli

LAND = "buckets/my-data-landing-zone"
TOKEN, KEY = "admin-s3cret-token", "api-k3y-value"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("sec") / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 900, seed=2)
    srv = Server(
        home,
        MINIMLOPS_ADMIN_TOKEN=TOKEN,
        MINIMLOPS_API_KEY=KEY,
        MINIMLOPS_MAX_BATCH="10",
        MINIMLOPS_MAX_BODY_BYTES="65536",
        MINIMLOPS_LOG_LEVEL="DEBUG",
    )
    srv.http.headers["X-API-Key"] = KEY
    srv.wait_healthy()
    yield srv
    srv.stop()


def test_predict_needs_the_api_key_when_one_is_set(server: Server) -> None:
    r = server.http.post("/predict", json=MODEL_FIELDS_ONLY, headers={"X-API-Key": "wrong"})
    assert r.status_code == 401
    assert (
        server.http.post("/explain", json=MODEL_FIELDS_ONLY, headers={"X-API-Key": ""}).status_code
        == 401
    )
    assert server.http.post("/predict", json=MODEL_FIELDS_ONLY).status_code == 200


def test_admin_needs_a_bearer_token_and_tokens_are_never_logged(server: Server) -> None:
    assert server.http.post("/train").status_code == 401
    r = server.http.post(
        "/query", json={"sql": "SELECT 1 AS one"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert r.status_code == 200 and r.json()["rows"] == [{"one": 1}]
    local = json.loads((server.home / "server.json").read_text())["token"]
    assert (server.home / "server.json").stat().st_mode & 0o077 == 0, "owner-only"
    output = server.output()
    assert TOKEN not in output and KEY not in output and local not in output


def test_admin_endpoints_never_answer_cross_origin(server: Server) -> None:
    pre = server.http.options(
        "/models/rollback",
        headers={"Origin": "http://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert pre.status_code == 403 and "access-control-allow-origin" not in pre.headers
    r = server.http.post(
        "/train", headers={"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"}
    )
    assert r.status_code == 403
    public = server.http.options(
        "/predict",
        headers={
            "Origin": "http://page.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )
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
)
def test_abusive_requests_get_a_specific_4xx(
    server: Server, body: bytes, status: int, needle: str
) -> None:
    r = server.http.post("/predict", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == status, r.text
    assert needle in r.text


def test_no_code_is_ever_loaded_from_data() -> None:
    """No pickle or joblib loading anywhere in the package."""
    src = Path(__file__).resolve().parents[2] / "src" / "minimlops"
    for path in src.rglob("*.py"):
        text = path.read_text()
        imports = re.search(
            r"^\s*(import|from)\s+(pickle|joblib|cloudpickle|dill|marshal)\b", text, re.MULTILINE
        )
        assert not imports and "pickle.load" not in text and "torch.load" not in text, path


# MINIMLOPS_PUBLIC_ROUTES: the listed routes are public, everything else needs a credential.
PUBLIC = "POST /predict,GET /healthz"
GUARDED = [  # every route but the listed and the admin ones, with a body where one is needed
    ("POST", "/feedback", {"uuid": "no-such-prediction", "Survived": 1}),
    ("POST", "/explain", MODEL_FIELDS_ONLY),
    ("GET", "/status", None),
    ("GET", "/monitoring", None),
    ("GET", "/events", None),
    ("GET", "/models", None),
    ("GET", "/models/1", None),
    ("GET", "/project", None),
    ("GET", "/ingestions/x/report", None),
    ("GET", "/metrics", None),
    ("GET", "/stats/serving", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
    ("GET", "/", None),
    ("GET", "/dashboard", None),
    ("GET", "/static/predict.js", None),
]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    home = tmp_path_factory.mktemp("public-routes") / "home"
    (home / LAND).mkdir(parents=True)
    write_csv(home / LAND / "passengers.csv", 900, seed=2)
    srv = Server(
        home, MINIMLOPS_ADMIN_TOKEN=TOKEN, MINIMLOPS_API_KEY=KEY, MINIMLOPS_PUBLIC_ROUTES=PUBLIC
    )
    srv.wait_healthy()  # GET /healthz is listed
    yield srv
    srv.stop()


def test_listed_routes_need_no_credential_even_with_an_api_key_set(guarded: Server) -> None:
    r = guarded.http.post("/predict", json=MODEL_FIELDS_ONLY)
    assert r.status_code == 200 and r.json()["model_version"] == "1", r.text
    assert guarded.http.post("/predict", json=[MODEL_FIELDS_ONLY] * 3).status_code == 200
    assert guarded.http.get("/healthz").status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"), GUARDED, ids=[f"{m} {p}" for m, p, _ in GUARDED]
)
def test_every_other_route_needs_the_api_key_or_the_admin_token(
    guarded: Server, method: str, path: str, body: Any
) -> None:
    def call(**headers: str) -> httpx.Response:
        return guarded.http.request(method, path, json=body, headers=headers)

    refused = call()
    assert refused.status_code == 401, refused.text
    assert refused.json()["detail"] == (
        "this route needs a valid X-API-Key header or an admin "
        "token (Authorization: Bearer <token>)"
    )
    wrong = call(**{"X-API-Key": "guessed-key"}, Authorization="Bearer guessed-token")
    assert wrong.status_code == 401 and "guessed" not in wrong.text
    assert call(**{"X-API-Key": KEY}).status_code not in (401, 403)
    assert call(Authorization=f"Bearer {TOKEN}").status_code not in (401, 403)
    assert call(Authorization=f"Bearer {guarded.token}").status_code not in (401, 403)  # the CLI's


def test_admin_routes_still_need_the_admin_token_the_api_key_is_not_enough(guarded: Server) -> None:
    sql = {"sql": "SELECT 1 AS one"}
    assert guarded.http.post("/query", json=sql).status_code == 401
    assert guarded.http.post("/query", json=sql, headers={"X-API-Key": KEY}).status_code == 401
    r = guarded.http.post("/query", json=sql, headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 200 and r.json()["rows"] == [{"one": 1}]
    r = guarded.http.post(
        "/models/rollback",
        headers={"Authorization": f"Bearer {TOKEN}", "Origin": "http://evil.example"},
    )
    assert r.status_code == 403
    assert "warehouse" in cli(guarded.home, "status").stdout  # the CLI sends its local token
    output = guarded.output()
    assert TOKEN not in output and KEY not in output


def test_a_page_elsewhere_gets_the_preflight_and_can_read_the_401(guarded: Server) -> None:
    pre = guarded.http.options(
        "/predict",
        headers={
            "Origin": "http://page.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        },
    )
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == "*"
    r = guarded.http.post(
        "/predict", json=MODEL_FIELDS_ONLY, headers={"Origin": "http://page.example"}
    )
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    refused = guarded.http.get("/status", headers={"Origin": "http://page.example"})
    assert refused.status_code == 401 and refused.headers["access-control-allow-origin"] == "*"


def test_a_malformed_public_routes_setting_stops_the_server_at_start(tmp_path: Path) -> None:
    proc = cli(
        tmp_path / "home",
        "up",
        "--port",
        "0",
        check=False,
        MINIMLOPS_PUBLIC_ROUTES="POST /predict,GET/healthz",
    )
    assert proc.returncode != 0
    assert "MINIMLOPS_PUBLIC_ROUTES" in proc.stderr and "GET/healthz" in proc.stderr, proc.stderr
    assert not (tmp_path / "home" / "server.json").exists()


@pytest.mark.parametrize(
    "text",
    [
        "GET/healthz",
        "FETCH /healthz",
        "GET healthz",
        "GET /a*b",
        "POST /train",
        "POST /models/3/promote",
    ],
)
def test_public_routes_entries_are_checked(text: str) -> None:
    with pytest.raises(ConfigError, match="MINIMLOPS_PUBLIC_ROUTES") as err:
        Access.parse(f"GET /healthz,{text}")
    assert repr(text) in str(err.value)


def test_public_routes_match_exactly_or_by_a_trailing_star() -> None:
    assert not Access.parse(None).on and not Access.parse(None).public("POST", "/predict")
    access = Access.parse(" post /predict , GET /static/*,")
    assert access.on and access.public("POST", "/predict") and access.public("GET", "/static/a.js")
    assert not access.public("GET", "/predict") and not access.public("POST", "/predict/")
    assert not access.public("POST", "/predictx") and not access.public("GET", "/static")
    assert not access.public("GET", "/static/../status")
    assert Access.parse("") == Access(on=True)  # set, nothing listed: everything needs a credential


def test_the_fast_path_lets_in_a_key_or_an_admin_token_and_leaves_the_rest_to_the_app() -> None:
    """In process: with /predict not listed, a request the fast path cannot let
    in goes to the app behind it (a serving process forwards it to the server,
    which also knows the local admin token added once it listens)."""
    tokens = [TOKEN]

    async def answer(body: bytes, content_type: str) -> tuple[int, bytes]:
        return 200, b'{"answered":"fast"}'

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b'{"answered":"app"}'})

    access = Access.parse("GET /healthz")
    front = FastPredict(
        PublicCORS(RequireCredential(app, access, Credentials(KEY, tokens)), ["*"]),
        answer,
        1024,
        api_key=KEY,
        access=access,
        admin_tokens=tokens,
    )
    off = FastPredict(app, answer, 1024, api_key=KEY)  # the setting unset: as before

    async def calls() -> list[tuple[int, str]]:
        out = []
        for asgi, headers in [
            (front, {}),
            (front, {"X-API-Key": KEY}),
            (front, {"Authorization": f"Bearer {TOKEN}"}),
            (front, {"Authorization": "Bearer local"}),
            (off, {}),
            (off, {"X-API-Key": KEY}),
        ]:
            if headers.get("Authorization") == "Bearer local":
                tokens.append("local")
            transport = httpx.ASGITransport(app=asgi)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                r = await client.post("/predict", json={}, headers=headers)
                out.append((r.status_code, r.text))
        return out

    refused, keyed, admin, local, off_refused, off_keyed = asyncio.run(calls())
    assert refused[0] == 401 and "X-API-Key" in refused[1]
    assert keyed == admin == local == off_keyed == (200, '{"answered":"fast"}')
    assert off_refused[0] == 401
