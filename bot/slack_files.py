"""Downloading a file a user uploaded through the modal's `file_input`."""

from __future__ import annotations

from typing import Any

import httpx

from bot.slack_urls import trusted_file_url
from bot.workflow.errors import UserError

DOWNLOAD_SECONDS = 2.0


class SlackFiles:
    """Fetches `url_private_download` with the bot token, size-limited.

    The token is only ever sent over https to Slack's file hosts on 443 (or to the
    configured SLACK_API_URL's origin, for the local stand-in): a payload naming another
    host, scheme or port is refused rather than handed the token. Redirects are not
    followed, so a trusted host cannot pass the token on either.
    """

    def __init__(self, *, token: str | None, api_url: str, transport: httpx.AsyncBaseTransport | None = None):
        self._token = token
        self._api_url = api_url
        self._transport = transport

    def _trusted(self, url: str) -> bool:
        return trusted_file_url(url, self._api_url)

    async def download(self, file: dict[str, Any], max_bytes: int) -> bytes:
        url = str(file.get("url_private_download") or file.get("url_private") or "")
        if not url or not self._trusted(url):
            raise UserError("Slack did not give a download address for this file; paste the IMEIs instead.")
        headers = {"Authorization": f"Bearer {self._token}"} if self._token else {}
        try:
            # The form is answered within Slack's 3 seconds; the download must fit well inside.
            async with httpx.AsyncClient(transport=self._transport, timeout=DOWNLOAD_SECONDS) as client:
                async with client.stream("GET", url, headers=headers) as response:
                    if response.status_code != 200:
                        raise UserError(f"Slack answered {response.status_code} when the file was downloaded.")
                    # Without a valid token Slack answers 200 with its HTML sign-in page, not a 401.
                    if response.headers.get("content-type", "").startswith("text/html"):
                        raise UserError(
                            "Slack returned a web page instead of the file: upload a CSV or text file "
                            "(if it is one, the bot may lack the files:read scope)"
                        )
                    chunks: list[bytes] = []
                    size = 0
                    async for chunk in response.aiter_bytes():
                        size += len(chunk)
                        if size > max_bytes:
                            raise UserError(f"is larger than {max_bytes // (1024 * 1024)} MiB")
                        chunks.append(chunk)
        except httpx.TimeoutException as exc:
            raise UserError(
                "Slack took too long to hand the file over; nothing was created. Submit again, or paste the IMEIs"
            ) from exc
        except httpx.HTTPError as exc:
            raise UserError(f"the file could not be downloaded from Slack ({type(exc).__name__})") from exc
        return b"".join(chunks)
