"""The WebhookSender port over httpx: one pooled client, no redirects followed
(a webhook that redirects is misconfigured, and following it would send the
signed body somewhere not named in the settings)."""

from __future__ import annotations

from collections.abc import Mapping

import httpx


class HttpxWebhookSender:
    def __init__(self) -> None:
        self._client = httpx.Client(follow_redirects=False)

    def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int:
        try:
            answer = self._client.post(url, content=body, headers=dict(headers), timeout=timeout)
        except httpx.HTTPError as exc:
            raise OSError(f"{type(exc).__name__}: {exc}") from exc
        return answer.status_code

    def close(self) -> None:
        self._client.close()
