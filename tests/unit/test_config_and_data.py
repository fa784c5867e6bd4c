"""Settings, the example-data downloader (against a local HTTP server) and the generator."""

from __future__ import annotations

import hashlib
import http.server
import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow.csv as pacsv
import pytest

from minimlops import example_data
from minimlops.config import ConfigError, Settings
from minimlops.errors import ExampleDataError
from minimlops.generate import write_csv
from tests.conftest import example_csv


def test_defaults_are_the_exercise_names() -> None:
    s = Settings.from_env({})
    assert (
        s.landing_bucket,
        s.model_bucket,
        s.training_table,
        s.predictions_table,
        s.ingestion_topic,
        s.port,
        s.host,
    ) == (
        "my-data-landing-zone",
        "my-model-storage",
        "training_data",
        "predictions_data",
        "ingestion_complete",
        8080,
        "127.0.0.1",
    )
    assert s.home == Path(".minimlops")


def test_flags_win_over_environment_which_wins_over_defaults() -> None:
    env = {"MINIMLOPS_PORT": "9000", "MINIMLOPS_HOME": "/data"}
    assert Settings.from_env(env).port == 9000
    assert Settings.from_env(env, port=7000, home=None).port == 7000
    assert Settings.from_env(env, port=7000, home=None).home == Path("/data")


def test_a_bad_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="MINIMLOPS_PORT"):
        Settings.from_env({"MINIMLOPS_PORT": "eighty"})
    with pytest.raises(ConfigError, match="MINIMLOPS_BACKEND"):
        Settings.from_env({"MINIMLOPS_BACKEND": "azure"})


def test_a_misspelt_setting_is_a_warning_naming_the_closest_setting(tmp_path: Path) -> None:
    """MINIMLOPS_PROT=9000 was ignored without a word: the command says so,
    once, on stderr, and goes on (the variable may be meant for another
    version or tool); a real setting and the project's own variables that
    are no settings (tests, scripts) get no warning."""
    from minimlops import projects
    from minimlops.bootstrap import check_home
    from minimlops.config import Settings
    from tests.e2e.harness import cli

    # a home something has run in (status says there is none otherwise)
    check_home(Settings.from_env({}, home=tmp_path / "home"), projects.load("titanic"))
    out = cli(
        tmp_path / "home",
        "status",
        "--json",
        MINIMLOPS_PROT="9000",
        MINIMLOPS_PORT="9001",
        MINIMLOPS_TEST_BIG_ROWS="10",
        MINIMLOPS_PEERS_PYTHON="python",
        MINIMLOPS_EMU_DIR=str(tmp_path),
    )
    warned = [line for line in out.stderr.splitlines() if "MINIMLOPS_" in line]
    assert warned == [
        "warning: MINIMLOPS_PROT is not a setting of minimlops and is ignored; "
        "did you mean MINIMLOPS_PORT?"
    ], out.stderr
    assert json.loads(out.stdout)["tables"]  # the command did its work


def test_a_command_on_a_home_nothing_has_run_in_says_so_and_creates_nothing(tmp_path) -> None:
    """`status` (and every command reading a home) in a directory without
    one: one line saying there is no home and how to start one, not an empty
    report from a home quietly created there."""
    from typer.testing import CliRunner

    from minimlops.entrypoints.cli.main import app

    home = tmp_path / "nowhere"
    for command in (["status"], ["models", "list"], ["query", "select 1"], ["train"]):
        result = CliRunner().invoke(app, [*command, "--home", str(home)])
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: no data home at {home}: nothing has run there yet"), line
        assert "minimlops up" in line and "--home" in line, line
        assert not home.exists(), f"{command}: no home is created"


def test_no_variable_the_project_itself_uses_is_taken_for_a_typo() -> None:
    """Every MINIMLOPS_* name written in the code, tests, scripts, CI and docs
    is a setting or one of the project's own variables (NOT_SETTINGS)."""
    root = Path(__file__).resolve().parents[2]
    mine = {Path(__file__).resolve(), root / "src" / "minimlops" / "config.py"}  # the typos above
    files = [root / "Makefile", *(root / ".ci").glob("*"), root / "README.md"]
    for base in ("src", "tests", "scripts", "docs", "infrastructure"):
        files += [
            f
            for f in (root / base).rglob("*")
            if f.is_file()
            and f.suffix in (".py", ".sh", ".md", ".toml", ".yaml", ".yml", ".tf", ".js")
        ]
    names = set()
    for f in files:
        if f.resolve() not in mine:
            names |= set(
                re.findall(r"\bMINIMLOPS_[A-Z0-9_]*[A-Z0-9]", f.read_text(errors="replace"))
            )
    assert {"MINIMLOPS_EXAMPLE_DATA", "MINIMLOPS_PEERS_PYTHON", "MINIMLOPS_TEST_BIG_ROWS"} <= names
    assert Settings.unknown_variables(dict.fromkeys(names, "1")) == []


class _Handler(http.server.BaseHTTPRequestHandler):
    body = b""
    hits = 0

    def do_GET(self) -> None:  # noqa: N802
        type(self).hits += 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"hits": 0})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}/titanic.csv", handler
    httpd.shutdown()


def test_download_is_verified_cached_and_done_once(server, tmp_path: Path, monkeypatch) -> None:
    url, handler = server
    handler.body = b"PassengerId\n1\n"
    monkeypatch.setattr(example_data, "SHA256", hashlib.sha256(handler.body).hexdigest())
    path = example_data.ensure(tmp_path, local=None, url=url)
    assert path.read_bytes() == handler.body
    example_data.ensure(tmp_path, local=None, url=url)
    assert handler.hits == 1


def test_download_with_the_wrong_hash_is_refused_and_not_kept(server, tmp_path: Path) -> None:
    url, handler = server
    handler.body = b"something else"
    with pytest.raises(ExampleDataError, match="SHA-256"):
        example_data.ensure(tmp_path, local=None, url=url)
    assert list(tmp_path.iterdir()) == []


def test_no_network_gives_a_message_that_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ExampleDataError, match="MINIMLOPS_EXAMPLE_DATA"):
        example_data.ensure(tmp_path, local=None, url="http://127.0.0.1:9/titanic.csv", timeout=2)


def test_local_copy_must_be_the_real_file(tmp_path: Path) -> None:
    fake = tmp_path / "t.csv"
    fake.write_text("a,b\n")
    with pytest.raises(ExampleDataError, match="not the Titanic"):
        example_data.ensure(tmp_path, local=fake, url="http://unused")
    with pytest.raises(ExampleDataError, match="no such file"):
        example_data.ensure(tmp_path, local=tmp_path / "missing.csv", url="http://unused")
    real = example_csv()
    if real is not None:  # CI sets MINIMLOPS_EXAMPLE_DATA
        assert example_data.ensure(tmp_path, local=real, url="http://unused") == real


def test_generator_is_deterministic_shaped_and_plants_bad_rows(tmp_path: Path) -> None:
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    write_csv(a, 2000, seed=5)
    write_csv(b, 2000, seed=5)
    assert a.read_bytes() == b.read_bytes()
    t = pacsv.read_csv(a)
    assert t.num_rows == 2000 and t.column_names[:3] == ["PassengerId", "Survived", "Pclass"]
    female = [s == "female" for s in t.column("Sex").to_pylist()]
    surv = t.column("Survived").to_pylist()
    rate_f = sum(s for s, f in zip(surv, female, strict=False) if f) / sum(female)
    rate_m = sum(s for s, f in zip(surv, female, strict=False) if not f) / (2000 - sum(female))
    assert rate_f > rate_m + 0.3  # the known rule: women first
    assert write_csv(tmp_path / "bad.csv", 100, seed=1, bad_rows=7) == 7
