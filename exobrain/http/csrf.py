"""Cross-site request forgery: what another site's page must not make a browser do here.

A browser attaches this service's cookies to requests that other sites' pages
start, and only ``SameSite=Lax`` stands in the way. So a request with an
unsafe method (anything but GET, HEAD, OPTIONS, TRACE) and no
``Authorization: Bearer`` header (the one credential a page cannot make a
browser send) must

- come from this service's own pages: ``Sec-Fetch-Site: same-origin``, or an
  ``Origin`` that is the service's own or allowed (:mod:`.origins`). With
  neither header it does not come from a browser: browsers send ``Origin``
  with every request whose method is not GET or HEAD (the Fetch standard;
  Firefox since version 70, the others long before), so it passes;
- carry JSON: ``Content-Type: application/json`` (or ``+json``) with a body,
  and no form's content type without one. Forms send only urlencoded,
  multipart and plain-text bodies (and name the type even when empty), and
  scripts need the server's CORS consent for any other type, which this
  service never gives: this covers browsers too old to send ``Origin``.

Requests without a cookie are held to the same rules: a login from another
site's page could sign the browser in to someone else's account.
"""

from __future__ import annotations

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from .auth.authentication import bearer_token
from .contract import Reply
from .errors import JsonError
from .origins import origin_allowed

SAFE_METHODS = frozenset({hdrs.METH_GET, hdrs.METH_HEAD, hdrs.METH_OPTIONS, hdrs.METH_TRACE})
#: What any other method may answer (:mod:`.docs` adds it to each such operation).
CROSS_SITE = Reply(
    "Refused as cross-site (no bearer token): neither `Sec-Fetch-Site: same-origin` nor an "
    "`Origin` of this service, or a body that is not JSON; the reason is named."
)
_SEC_FETCH_SITE = "Sec-Fetch-Site"
#: What a form sends, even an empty one; a page's script needs CORS consent for other types.
_FORM_TYPES = frozenset({"application/x-www-form-urlencoded", "multipart/form-data", "text/plain"})


@web.middleware
async def csrf_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 ``{"detail": reason}`` for an unsafe request a cross-site page could have sent."""
    if (
        request.method not in SAFE_METHODS
        and bearer_token(request) is None
        and (reason := _refusal(request)) is not None
    ):
        raise JsonError(403, reason)
    return await handler(request)


def _refusal(request: web.Request) -> str | None:
    headers = request.headers
    site, origin = headers.get(_SEC_FETCH_SITE), headers.get(hdrs.ORIGIN)
    from_browser = site is not None or origin is not None
    if from_browser and site != "same-origin" and not origin_allowed(request, origin):
        return (
            "cross-origin request refused: needs Sec-Fetch-Site: same-origin"
            " or an Origin of this service"
        )
    if request.body_exists:
        if not _is_json(request.content_type):
            return "cross-origin request refused: the Content-Type must be application/json"
    elif hdrs.CONTENT_TYPE in headers and request.content_type in _FORM_TYPES:
        return "cross-origin request refused: a form's Content-Type"
    return None


def _is_json(media_type: str) -> bool:
    return media_type == "application/json" or media_type.endswith("+json")
