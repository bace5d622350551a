"""The trusted-URL checks' shortcut (a URL's beginning) says yes only where parsing the URL does."""

from __future__ import annotations

import itertools

import pytest

from bot.slack_urls import FILE_HOSTS, RESPONSE_HOSTS, _allowed, _allowed_parsed, _trusted_prefixes

API_URLS = [
    "http://127.0.0.1:4567/api/",
    "https://slack.com/api/",
    "https://Example.COM:443/api/",
    "http://localhost/api/",
    "http://[::1]:4567/api/",
    "ftp://files.example/api/",
    "not a url",
]
BEGINNINGS = [
    "https://hooks.slack.com",
    "https://hooks.slack.com:443",
    "https://files.slack.com",
    "https://hooks.slack-gov.com",
    "http://127.0.0.1:4567",
    "http://127.0.0.1",
    "https://slack.com",
    "https://example.com",
    "http://localhost:80",
    "http://[::1]:4567",
    "HTTPS://HOOKS.SLACK.COM",
    " https://hooks.slack.com",
    "https://hooks.slack.com.evil.example",
    "https://hooks.slack.com@evil.example",
    "https://hooks.slack.com:443@evil.example",
    "https://user@hooks.slack.com",
    "https://hooks.slack.com:0443",
    "https://hooks.slack.com:8443",
    "http://hooks.slack.com",
]
ENDINGS = ["/", "/commands/T1/2/abc", "/@evil.example/", "/\\@evil.example", "/?a=@b", "/#@c", "/\t", ":80/", "", "?x", "#x"]


@pytest.mark.parametrize("api_url", API_URLS)
@pytest.mark.parametrize("hosts", [RESPONSE_HOSTS, FILE_HOSTS], ids=["response", "file"])
def test_the_shortcut_agrees_with_parsing_the_url(api_url: str, hosts: frozenset[str]) -> None:
    for beginning, ending in itertools.product(BEGINNINGS, ENDINGS):
        url = beginning + ending
        assert _allowed(url, hosts, api_url) is _allowed_parsed(url, hosts, api_url), url


def test_the_shortcut_is_taken_for_slacks_own_urls_and_the_stand_ins() -> None:
    prefixes = _trusted_prefixes(RESPONSE_HOSTS, "http://127.0.0.1:4567/api/")
    for url in ("https://hooks.slack.com/commands/T1/2/abc", "http://127.0.0.1:4567/response/B1"):
        assert url.startswith(prefixes)
    # An IPv6 host is left to the parser: brackets and ports are not worth a shortcut.
    assert not any("[" in p for p in _trusted_prefixes(RESPONSE_HOSTS, "http://[::1]:4567/api/"))
