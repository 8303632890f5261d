"""``/api/users``: the signed-in user."""

from __future__ import annotations

from aiohttp import web
from typing_extensions import TypedDict

from exobrain.auth import Principal

from .auth.authentication import authenticated
from .contract import USER, Reply, operation
from .errors import json_response

routes = web.RouteTableDef()


class Me(TypedDict):
    name: str
    email: str


@routes.get("/api/users/me")
@operation(security=USER, outage=True, responses={200: Reply("The signed-in user.", Me)})
@authenticated
async def me(request: web.Request, principal: Principal) -> web.Response:
    """The signed-in user's name and email; 401 without a valid session or token."""
    return json_response(Me(name=principal.name, email=principal.email))
