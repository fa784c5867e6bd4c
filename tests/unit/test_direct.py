"""POST /predict answered by the protocol itself (``DirectHttpTools``): over a
real socket, every answer is the one uvicorn's ASGI cycle gives for the same
bytes, and the connection behaves the same (keep-alive, pipelining, close,
100-continue, limits, errors, a client that goes away)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import re
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn

from minimlops.entrypoints.http.fastpath import FastPredict
from minimlops.entrypoints.runtime.coalesce import CoalescingHttpTools
from minimlops.entrypoints.runtime.direct import DirectHttpTools, _Direct

MAX_BODY = 200


class Counting(FastPredict):
    """The front, counting the requests that reached it through ASGI."""

    asgi = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("path") == "/predict":
            type(self).asgi += 1
        await super().__call__(scope, receive, send)


async def other(scope: Any, receive: Any, send: Any) -> None:
    """The app behind the front: everything that is not POST /predict."""
    if scope["type"] != "http":
        return
    body = b'{"app":"%s %s"}' % (scope["method"].encode(), scope["path"].encode())
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def answer(body: bytes, content_type: str) -> tuple[int, bytes]:
    """A stand-in for predict_answerer: waits a turn as the log would."""
    if not content_type.startswith("application/json"):
        return 415, b'{"detail":"send JSON"}'
    await asyncio.sleep(0.001 if b"slow" in body else 0)
    if b"boom" in body:
        raise RuntimeError("boom")
    return 200, b'{"echo":%d}' % len(body)


@contextlib.contextmanager
def serving(front: FastPredict, protocol: type, **config: Any) -> Iterator[int]:
    """``front`` behind ``protocol`` on loopback, run as `minimlops up` runs
    it (no proxy headers: the front is uvicorn's app); yields its port."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(
        uvicorn.Config(
            front,
            http=protocol,
            lifespan="off",
            log_level="critical",
            server_header=False,
            proxy_headers=False,
            **config,
        )
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.01)
    try:
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, int]]:
    """The same front behind uvicorn's protocol (ASGI) and ours, each on loopback."""
    with contextlib.ExitStack() as stack:
        yield {
            name: stack.enter_context(
                serving(Counting(other, answer, MAX_BODY, origins=("https://a.example",)), protocol)
            )
            for name, protocol in (("asgi", CoalescingHttpTools), ("direct", DirectHttpTools))
        }


def exchange(port: int, data: bytes, answers: int = 1, timeout: float = 5) -> bytes:
    """Send raw bytes on one connection; read until ``answers`` answers came
    (by content-length) or the server closed it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(data)
        got = b""
        while _complete(got) < answers:
            try:
                chunk = conn.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                break
            got += chunk
        return got


def _complete(data: bytes) -> int:
    count, at = 0, 0
    while (end := data.find(b"\r\n\r\n", at)) >= 0:
        head = data[at:end]
        if head.startswith(b"HTTP/1.1 100"):
            at = end + 4
            continue
        length = re.search(rb"content-length: (\d+)", head, re.IGNORECASE)
        stop = end + 4 + (int(length.group(1)) if length else 0)
        if stop > len(data):
            break
        count, at = count + 1, stop
    return count


def same(data: bytes) -> bytes:
    """An exchange without its date header (it changes by the second)."""
    return re.sub(rb"date: [^\r]*\r\n", b"", data)


def post(body: bytes, *headers: bytes, path: bytes = b"/predict", version: bytes = b"1.1") -> bytes:
    lines = [b"POST " + path + b" HTTP/" + version, b"Host: x", *headers]
    if not any(h.lower().startswith(b"transfer-encoding") for h in headers):
        lines.append(b"Content-Length: %d" % len(body))
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


JSON = b"Content-Type: application/json"
# the request(s), the answers, and how many of its POST /predict take the ASGI
# cycle on the direct server (an unusual request, or one behind another)
CASES = {
    "plain": (post(b'{"a": 1}', JSON), 1, 0),
    "cors": (post(b'{"a": 1}', JSON, b"Origin: https://a.example"), 1, 0),
    "not json": (post(b"a=1", b"Content-Type: text/plain"), 1, 0),
    "too large": (post(b"x" * (MAX_BODY + 1), JSON), 1, 0),
    "http/1.0": (post(b'{"a": 1}', JSON, version=b"1.0"), 1, 0),
    "connection close": (post(b'{"a": 1}', JSON, b"Connection: close"), 1, 0),
    "query string": (post(b'{"a": 1}', JSON, path=b"/predict?x=1"), 1, 1),
    "100-continue": (post(b'{"a": 1}', JSON, b"Expect: 100-continue"), 1, 1),
    "chunked": (
        post(b"", JSON, b"Transfer-Encoding: chunked") + b'4\r\n{"a"\r\n4\r\n: 1}\r\n0\r\n\r\n',
        1,
        0,
    ),
    "keep-alive": (post(b'{"a": 1}', JSON) + post(b'{"a": 22}', JSON), 2, 1),
    "pipelined with other routes": (
        post(b'{"slow": 1}', JSON)
        + b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
        + post(b'{"a": 333}', JSON)
        + post(b"{}", JSON, path=b"/elsewhere"),
        4,
        1,
    ),
    "an answer that fails": (post(b'{"boom": 1}', JSON), 1, 0),
}


@pytest.mark.parametrize("case", CASES)
def test_an_answer_is_the_one_the_asgi_cycle_gives(servers: dict[str, int], case: str) -> None:
    data, answers, via_asgi = CASES[case]
    asgi = exchange(servers["asgi"], data, answers)
    before = Counting.asgi
    direct = exchange(servers["direct"], data, answers)
    assert _complete(asgi) == answers, asgi
    assert same(direct) == same(asgi)
    assert Counting.asgi - before == via_asgi  # the rest were answered directly


def test_a_plain_predict_skips_the_asgi_cycle_and_the_rest_takes_it(
    servers: dict[str, int],
) -> None:
    before = Counting.asgi
    with socket.create_connection(("127.0.0.1", servers["direct"]), timeout=5) as conn:
        for _ in range(3):  # one after another on a kept-alive connection
            conn.sendall(post(b'{"a": 1}', JSON))
            got = b""
            while _complete(got) < 1:
                got += conn.recv(65536)
            assert got.endswith(b'{"echo":8}')
    assert Counting.asgi == before  # none went through ASGI
    exchange(servers["direct"], post(b'{"a": 1}', JSON, path=b"/predict?x=1"))
    exchange(servers["direct"], post(b'{"a": 1}', JSON) + post(b'{"a": 1}', JSON), 2)
    assert Counting.asgi == before + 2  # an unusual one, and one pipelined behind another


def test_the_answer_reads_as_uvicorns_own(servers: dict[str, int]) -> None:
    got = exchange(servers["direct"], post(b'{"a": 1}', JSON, b"Origin: https://a.example"))
    head, _, body = got.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"HTTP/1.1 200 OK" and body == b'{"echo":8}'
    fields = dict(line.split(b": ", 1) for line in lines[1:])
    assert fields[b"content-type"] == b"application/json"
    assert fields[b"content-length"] == b"10"
    assert fields[b"access-control-allow-origin"] == b"https://a.example"
    assert fields[b"vary"] == b"Origin" and b"date" in fields


def test_a_client_that_goes_away_before_its_answer_leaves_the_server_serving(
    servers: dict[str, int],
) -> None:
    for _ in range(20):
        conn = socket.create_connection(("127.0.0.1", servers["direct"]))
        conn.sendall(post(b'{"slow": 1}', JSON))
        conn.close()  # before the answer (it waits a millisecond)
    time.sleep(0.05)
    assert exchange(servers["direct"], post(b'{"a": 1}', JSON)).endswith(b'{"echo":8}')


def test_a_body_sent_in_pieces_is_answered_whole(servers: dict[str, int]) -> None:
    body = b'{"a": "' + b"y" * 150 + b'"}'
    with socket.create_connection(("127.0.0.1", servers["direct"]), timeout=5) as conn:
        data = post(body, JSON)
        for i in range(0, len(data), 7):
            conn.sendall(data[i : i + 7])
            time.sleep(0.001)
        got = b""
        while _complete(got) < 1:
            got += conn.recv(65536)
    assert got.endswith(b'{"echo":%d}' % len(body))


def _closed_after(port: int, requests: int, gap: float, wait: float) -> bool:
    """Whether the server closed a kept-alive connection ``wait`` seconds
    after ``requests`` requests sent ``gap`` seconds apart."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        for _ in range(requests):
            conn.sendall(post(b'{"a": 1}', JSON))
            got = b""
            while _complete(got) < 1:
                got += conn.recv(65536)
            time.sleep(gap)
        time.sleep(wait)
        conn.settimeout(0.05)
        try:
            return conn.recv(1) == b""
        except TimeoutError:
            return False


@pytest.mark.parametrize("protocol", [CoalescingHttpTools, DirectHttpTools])
def test_an_idle_connection_is_closed_after_the_keep_alive_time_out_and_a_busy_one_is_not(
    protocol: type,
) -> None:
    with serving(FastPredict(other, answer, MAX_BODY), protocol, timeout_keep_alive=1) as port:
        # requests 0.6 s apart for 2.4 s: longer than the time-out in all,
        # never idle for as long
        assert not _closed_after(port, 4, 0.6, 0.0)
        assert _closed_after(port, 2, 0.0, 1.5)  # idle for longer than the time-out
        assert not _closed_after(port, 2, 0.0, 0.5)  # idle for less


def test_an_answered_request_is_freed_without_the_cycle_collector(servers: dict[str, int]) -> None:
    gc.collect()
    gc.disable()
    try:
        with socket.create_connection(("127.0.0.1", servers["direct"]), timeout=5) as conn:
            for _ in range(20):
                conn.sendall(post(b'{"a": 1}', JSON))
                got = b""
                while _complete(got) < 1:
                    got += conn.recv(65536)
        for _ in range(5):
            exchange(servers["direct"], post(b'{"a": 1}', JSON, b"Connection: close"))
        time.sleep(0.1)
        # type(), not isinstance: a lazy module's stand-in raises when asked its class
        left = [o for o in gc.get_objects() if type(o) in (_Direct, DirectHttpTools)]
    finally:
        gc.enable()
    assert len(left) <= 1, left  # at most the kept-alive connection's last, until it closes
