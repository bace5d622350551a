"""Which addresses named in a Slack payload the bot may send something to.

A signed payload still names URLs: a `response_url` the bot posts answers to, a file's
`url_private_download` it fetches with the bot token. Both go only to Slack's own hosts over
https on 443, or to the exact origin of SLACK_API_URL (the local stand-in in tests and the
demo), never to a host a payload chose.
"""

from __future__ import annotations

from functools import lru_cache
from urllib.parse import urlsplit

# Where Slack's response URLs live (https://hooks.slack.com/commands/…, …/actions/…).
RESPONSE_HOSTS = frozenset({"hooks.slack.com", "hooks.slack-gov.com"})
# Where uploaded files are served from (url_private, url_private_download).
FILE_HOSTS = frozenset({"files.slack.com", "files.slack-gov.com"})


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:  # a port that is not a number, an unbalanced [
        return None
    if parts.username is not None or parts.password is not None:
        return None
    scheme = parts.scheme.lower()
    default = {"https": 443, "http": 80}.get(scheme)
    return scheme, (parts.hostname or "").lower(), port if port is not None else default


@lru_cache(maxsize=8)
def _configured_origin(api_url: str) -> tuple[str, str, int | None] | None:
    """SLACK_API_URL's origin, worked out once: it is the same for every request."""
    return _origin(api_url)


@lru_cache(maxsize=8)
def _trusted_prefixes(hosts: frozenset[str], api_url: str) -> tuple[str, ...]:
    """Beginnings that settle it without parsing: a URL that starts `scheme://host/` or
    `scheme://host:port/` of a trusted origin has that origin (its host part ends at the
    first "/"). Anything else is parsed (`_allowed_parsed`)."""
    prefixes = [f"https://{host}{port}/" for host in sorted(hosts) for port in ("", ":443")]
    origin = _configured_origin(api_url)
    if origin is not None and origin[1] and origin[2] is not None and ":" not in origin[1]:
        scheme, host, port = origin
        prefixes.append(f"{scheme}://{host}:{port}/")
        if port == {"https": 443, "http": 80}.get(scheme):
            prefixes.append(f"{scheme}://{host}/")
    return tuple(prefixes)


def _allowed(url: str, hosts: frozenset[str], api_url: str) -> bool:
    # Every response_url of every request passes here: the usual one is settled by its beginning.
    return url.startswith(_trusted_prefixes(hosts, api_url)) or _allowed_parsed(url, hosts, api_url)


def _allowed_parsed(url: str, hosts: frozenset[str], api_url: str) -> bool:
    origin = _origin(url)
    if origin is None or not origin[1]:
        return False
    if origin == ("https", origin[1], 443) and origin[1] in hosts:
        return True
    return origin == _configured_origin(api_url)


def trusted_response_url(url: str, api_url: str) -> bool:
    """May the bot post to this `response_url`? (https on Slack's hooks host, or SLACK_API_URL's origin)"""
    return _allowed(url, RESPONSE_HOSTS, api_url)


def trusted_file_url(url: str, api_url: str) -> bool:
    """May the bot send its token to fetch this file? (https on Slack's file hosts, or SLACK_API_URL's origin)"""
    return _allowed(url, FILE_HOSTS, api_url)
