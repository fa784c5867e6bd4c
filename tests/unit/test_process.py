"""The cycle collector in a long-running server: what start-up and late imports
loaded is frozen, so the collector's passes walk only what requests create."""

from __future__ import annotations

import gc
import sys

from minimlops.process import freeze_long_lived, freeze_new_modules
from tests.conftest import fresh_python


def test_modules_imported_after_start_up_are_frozen_at_the_next_check(
    tmp_path, monkeypatch
) -> None:
    (tmp_path / "late_library.py").write_text(
        "TABLE = [{'row': i, 'cells': [i, str(i)]} for i in range(2000)]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    freeze_long_lived()
    try:
        assert freeze_new_modules() is False  # nothing new: no collection, no freeze
        import late_library

        walked = {id(o) for o in gc.get_objects()}
        assert id(late_library.TABLE[0]) in walked  # a pass of the collector would walk it
        assert freeze_new_modules() is True
        walked = {id(o) for o in gc.get_objects()}
        assert id(late_library.TABLE) not in walked
        assert not any(id(row) in walked for row in late_library.TABLE)
        assert freeze_new_modules() is False
    finally:
        gc.unfreeze()
        sys.modules.pop("late_library", None)


def test_a_spawned_process_does_not_import_the_command_line_again() -> None:
    """multiprocessing's spawn runs the parent's main module again in every
    child (the training process, an extra serving process): under the
    ``minimlops`` command that is its installed script, which must not import
    the command line (typer, rich, the settings: ~0.2 s of each child's start)."""
    import shutil
    from pathlib import Path

    import pytest

    script = Path(sys.executable).with_name("minimlops")
    if not script.exists():
        found = shutil.which("minimlops")
        if found is None:
            pytest.skip("the minimlops command is not installed")
        script = Path(found)
    probe = (
        "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__mp_main__'); "
        "print(sorted(m for m in ('typer', 'rich', 'minimlops.entrypoints.cli.main') "
        "if m in sys.modules))"
    )
    assert fresh_python(probe, str(script)) == "[]"
