"""Whether a browser's ``Origin`` is this service's own, or one the deployment allows.

Two origins are the same when scheme, host and port all match (RFC 6454), a
default port written or not. The service's own origin is the request's
``Host`` with the scheme a browser used: ``https`` outside ``APP_ENV=local``
(the session cookie is ``Secure`` there, so a browser sends it only over TLS,
which a proxy in front of us ends), the connection's own scheme in ``local``.
Forwarded headers are not trusted. Deployments whose proxy rewrites ``Host``,
or whose pages live on another origin, list those origins in
``AUTH_ALLOWED_ORIGINS``.
"""

from __future__ import annotations

import functools
from urllib.parse import urlsplit

from aiohttp import web

from .resources import SETTINGS

#: Scheme, host, port.
Origin = tuple[str, str, int]

_DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=1024)  # pages send the same few origins, hosts the same few names
def parse_origin(value: str) -> Origin | None:
    """``scheme://host[:port]`` as a comparable triple; None for ``null`` or anything else."""
    try:
        parts = urlsplit(value.strip())
        scheme, host, port = parts.scheme.lower(), parts.hostname, parts.port
    except ValueError:  # a port out of range, brackets that do not close
        return None
    if scheme not in _DEFAULT_PORTS or not host or parts.path not in ("", "/"):
        return None
    if parts.query or parts.fragment or parts.username is not None:
        return None
    return scheme, host, _DEFAULT_PORTS[scheme] if port is None else port


def origin_allowed(request: web.Request, origin: str | None, *extra: frozenset[str]) -> bool:
    """Whether ``origin`` is the request's own or listed in ``AUTH_ALLOWED_ORIGINS`` (or
    in one of the ``extra`` allowlists of settings' origins)."""
    if origin is None or (parsed := parse_origin(origin)) is None:
        return False
    settings = request.app[SETTINGS]
    scheme = request.scheme if settings.is_local else "https"
    if parsed == parse_origin(f"{scheme}://{request.host}"):
        return True
    return any(parsed in _parsed(allowed) for allowed in (settings.auth_allowed_origins, *extra))


@functools.cache
def _parsed(origins: frozenset[str]) -> frozenset[Origin | None]:
    return frozenset(parse_origin(origin) for origin in origins)
