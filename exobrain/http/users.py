"""``/api/users``: the signed-in user."""

from __future__ import annotations

from aiohttp import web

from exobrain.auth import Principal

from .auth.authentication import authenticated
from .errors import json_response

routes = web.RouteTableDef()


@routes.get("/api/users/me")
@authenticated
async def me(request: web.Request, principal: Principal) -> web.Response:
    """The signed-in user's name and email; 401 without a valid session or token."""
    return json_response({"name": principal.name, "email": principal.email})
