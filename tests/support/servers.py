"""Serve an ASGI app over real HTTP on 127.0.0.1 inside the test's own event loop.

The helper lives in `bot.server` because `fota-bot demo` and the benchmarks use it too.
"""

from bot.server import serve_in_loop as serve_app

__all__ = ["serve_app"]
