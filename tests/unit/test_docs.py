"""The docs cannot drift from the code: the reference pages are generated
(scripts/reference.py) and must be current, every setting has a
description, and every relative link in the README and docs/ leads to a file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from minimlops.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_the_generated_reference_is_current() -> None:
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "reference.py"), "--check"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def test_every_setting_says_what_it_does() -> None:
    assert [n for n, f in Settings.model_fields.items() if not (f.description or "").strip()] == []


def test_relative_links_lead_somewhere() -> None:
    broken = []
    for page in [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # not inside code
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"^(https?:|mailto:|#)", target):
                continue
            path = (page.parent / target.split("#", 1)[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(ROOT)}: {target}")
    assert not broken, "\n".join(broken)
