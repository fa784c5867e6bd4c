"""The docs cannot drift from the code: the reference pages and the figures
are generated (scripts/reference.py) and must be current, every setting has
a description, every relative link in the README and docs/ leads to a file
and its anchor to a heading, and the README stays short and free of history."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from minimlops.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_reference_is_current() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "reference.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr


def test_every_setting_says_what_it_does() -> None:
    assert [n for n, f in Settings.model_fields.items() if not (f.description or "").strip()] == []


PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a page's headings: lower case, punctuation
    dropped, spaces to hyphens, a repeated heading numbered -1, -2, …"""
    seen: dict[str, int] = {}
    out = set()
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    return out


def test_relative_links_and_anchors_lead_somewhere() -> None:
    broken = []
    for page in PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # not inside code
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^(https?:|mailto:)", target):
                continue
            file, _, anchor = target.partition("#")
            path = (page.parent / file).resolve() if file else page
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and path.suffix == ".md" and anchor not in anchors(path):
                broken.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)


def test_the_anchor_check_follows_github() -> None:
    page = ROOT / "docs" / "reference" / "settings.md"
    assert "settings" in anchors(page)
    assert anchors(ROOT / "docs" / "reference" / "http.md") >= {"post-predict", "get-healthz"}


def test_the_readme_starts_people_and_keeps_no_history() -> None:
    """Short, and history lives in CHANGELOG.md and bench/results/: no work
    periods, no dated narrative, no issue numbers in the README or docs/."""
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    diary = re.compile(
        r"\bsession \d|\bissue #?\d|\(#\d+\)|\bthe run before\b|\bpreviously measured\b", re.I
    )
    found = [
        f"{p.relative_to(ROOT)}: {m.group(0)}"
        for p in PAGES
        if p.name != "CHANGELOG.md"
        for m in diary.finditer(
            re.sub(r"<!-- BEGIN generated.*?END generated -->", "", p.read_text(), flags=re.S)
        )
    ]
    assert not found, found


def test_the_help_names_every_example() -> None:
    """The lists of examples in the help and the settings' descriptions are
    typed, so they are checked: every example the package ships is named."""
    from minimlops.projects import EXAMPLES

    cli = (ROOT / "docs" / "reference" / "cli.md").read_text()
    described = Settings.model_fields["project"].description or ""
    assert [e for e in EXAMPLES if e not in described or e not in cli] == []


def test_the_project_guide_lists_every_reserved_column_name() -> None:
    from minimlops.domain.project import RESERVED

    text = (ROOT / "docs" / "projects.md").read_text()
    row = next(line for line in text.splitlines() if "are refused:" in line)
    assert re.findall(r"`([a-z_]+)`", row.split("are refused:", 1)[1].split(".")[0]) == list(
        RESERVED
    )
