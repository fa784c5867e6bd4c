"""The server's questions to its serving processes, over a real pipe."""

from __future__ import annotations

import multiprocessing as mp
import threading
import time

import pytest

from minimlops.entrypoints.runtime.workers import _Child


def test_a_late_answer_is_never_taken_for_the_next_questions() -> None:
    ours, theirs = mp.Pipe()
    child = _Child("serving-1", process=None, conn=ours)

    def slow_then_prompt() -> None:
        number, kind = theirs.recv()
        time.sleep(0.3)  # answers the first question after the server gave up
        theirs.send((number, f"late {kind}"))
        number, kind = theirs.recv()
        theirs.send((number, f"answer to {kind}"))

    answering = threading.Thread(target=slow_then_prompt)
    answering.start()
    with pytest.raises(TimeoutError, match="did not answer 'refresh'"):
        child.ask("refresh", timeout=0.1)
    time.sleep(0.4)  # the late answer is waiting in the pipe now
    assert child.ask("counters", timeout=5) == "answer to counters"
    answering.join()
