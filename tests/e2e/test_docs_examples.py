"""The docs' own-data walk-through, run as a reader runs it: the commands of
docs/getting-started.md ("Your own CSV"), as written there, in a fresh
directory; then the curl `up` prints, pasted. A doc that lies fails here."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import httpx

from tests.e2e.harness import env_for, free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]


def documented_commands() -> list[str]:
    """The `minimlops …` lines of the section's bash blocks, comments cut."""
    text = (ROOT / "docs" / "getting-started.md").read_text()
    section = text[text.index("## Your own CSV") :]
    section = section[: section.index("\n## ", 1)] if "\n## " in section[1:] else section
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", section, flags=re.S):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command.startswith("minimlops ") and "..." not in command:
                lines.append(command)
    return lines


def test_the_getting_started_walk_through_serves_a_model(tmp_path: Path) -> None:
    commands = documented_commands()
    verbs = [shlex.split(c)[1] for c in commands]
    assert verbs == ["generate", "init", "up", "ingest"], commands
    env = env_for(tmp_path / "unused-home")
    env.pop("MINIMLOPS_HOME")  # the reader has none set: the commands say --home

    def run(command: str) -> subprocess.CompletedProcess[str]:
        args = [sys.executable, "-m", "minimlops", *shlex.split(command)[1:]]
        done = subprocess.run(
            args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )
        assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
        return done

    generate, init, up, ingest = commands
    run(generate)
    run(init)
    port = free_port()
    log = open(tmp_path / "up.log", "w")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "minimlops", *shlex.split(up)[1:], "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        output = (tmp_path / "up.log").read_text
        wait_until(lambda: "listening" in output(), 90, output)
        run(ingest)
        wait_until(lambda: httpx.get(f"{url}/healthz").status_code == 200, 120, output)
        curl = wait_until(
            lambda: next((ln for ln in output().splitlines() if ln.startswith("curl ")), None),
            60,
            output,
        )
        answer = json.loads(
            subprocess.run(
                ["bash", "-c", curl.replace("curl ", "curl -s ", 1)],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        )
        assert answer["prediction"] in ("Yes", "No") and answer["model_version"] == "1", answer
        feedback = httpx.post(f"{url}/feedback", json={"uuid": answer["uuid"], "churned": "No"})
        assert feedback.status_code == 200 and feedback.json()["accepted"] == 1, feedback.text
    finally:
        server.terminate()
        server.wait(60)
        log.close()
