"""Security headers on every answer: the console's content policy, no sniffing, no framing."""

from __future__ import annotations

from aiohttp import web

# The console is same-origin files only (web/): no inline script or style, no eval, no frames.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


async def add_security_headers(_request: web.Request, response: web.StreamResponse) -> None:
    """An on_response_prepare hook: API answers get them too, at no cost."""
    response.headers.update(SECURITY_HEADERS)
