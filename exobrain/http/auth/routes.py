"""``/api/auth``: login, refresh-token rotation and logout (DESIGN.md §5).

A browser logs in with ``session_mode=web, issuance_policy=session`` and from
then on relies on its HttpOnly session cookie; every other combination returns
a bearer access token and a refresh token, as the reference API does.
"""

from __future__ import annotations

from typing import Literal

from aiohttp import hdrs, web
from pydantic import BaseModel, Field
from typing_extensions import TypedDict

from exobrain.auth import LoginThrottledError, Principal, RefreshGrant
from exobrain.http import users
from exobrain.http.contract import Header, Reply, operation, throttled
from exobrain.http.errors import JsonError, json_response
from exobrain.http.resources import PG_POOL, SETTINGS
from exobrain.http.validation import Text, parse_body
from exobrain.store.users import find_password_identity, find_user

from .authentication import AUTH, Auth, auth_ctx, unauthorized


class LoginRequest(BaseModel):
    email: Text
    password: Text = Field(min_length=8)
    session_mode: Literal["web", "api"] = "web"
    issuance_policy: Literal["session", "tokens"] = "session"
    device_token: Text | None = Field(
        default=None,
        description="The `device_token` of an earlier login with this email (browsers send "
        "the device cookie instead): the attempt counts only against that device's failures.",
    )


class RefreshRequest(BaseModel):
    refresh_token: Text


class LogoutRequest(BaseModel):
    refresh_token: Text | None = None


class WebSession(TypedDict):
    """A browser's login: the session is in the HttpOnly cookie, not in the body."""

    session_established: Literal[True]
    user_name: str


class TokenPair(TypedDict):
    """An API client's login: a short-lived access token and the refresh token that renews it."""

    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: int


class LoginTokens(TokenPair):
    """A token pair, and this client's new device token for its next logins."""

    device_token: str


SET_COOKIE = Header(
    "The session cookie, and on login the device cookie (HttpOnly, SameSite=Lax).",
    required=False,
)
INVALID_REFRESH = Reply("The refresh token is unknown, expired, revoked or was already used.")


routes = web.RouteTableDef()


def setup_auth(app: web.Application) -> None:
    """Register the auth components (started after Redis) and the routes that need them."""
    app.cleanup_ctx.append(auth_ctx)
    app.router.add_routes(routes)
    app.router.add_routes(users.routes)


@routes.post("/api/auth/login")
@operation(
    body=LoginRequest,
    outage=True,
    responses={
        200: Reply(
            "Logged in: a web session (cookies set) or a token pair.",
            WebSession | LoginTokens,
            headers={"Set-Cookie": SET_COOKIE},
        ),
        401: Reply("Wrong email or password."),
        429: throttled(
            "Too many failed logins for this device, or for this email or address from a "
            "client without the email's device token; the detail says when to retry."
        ),
    },
)
async def login(request: web.Request) -> web.Response:
    """Log in with email and password.

    `session_mode=web` with `issuance_policy=session` (the defaults) sets an HttpOnly
    session cookie and the device cookie, and answers `{session_established, user_name}`;
    any other combination answers `{access_token, refresh_token, token_type, expires_in,
    device_token}`. 401 on wrong credentials; 429 with `Retry-After` after too many
    failures (a client with this email's device cookie or `device_token` is held only to
    its own failures).
    """
    body = await parse_body(request, LoginRequest)
    auth, settings = request.app[AUTH], request.app[SETTINGS]
    presented = body.device_token or request.cookies.get(settings.auth_device_cookie_name)
    device = auth.devices.device(body.email, presented)
    try:
        user = await _check_credentials(auth, request, body, device)
    except LoginThrottledError as exc:
        raise JsonError(
            429,
            f"too many failed logins: retry in {exc.retry_after} second"
            + ("s" if exc.retry_after != 1 else ""),
            headers={hdrs.RETRY_AFTER: str(exc.retry_after)},
        ) from None
    device_token = auth.devices.issue(body.email)
    if body.session_mode == "web" and body.issuance_policy == "session":
        response = await _start_web_session(request, user)
        _set_cookie(
            request,
            response,
            settings.auth_device_cookie_name,
            device_token,
            auth.devices.ttl_seconds,
        )
        return response
    return _token_pair(auth, user, await auth.refresh_tokens.issue(user.user_id), device_token)


@routes.post("/api/auth/token_refresh")
@operation(
    body=RefreshRequest,
    outage=True,
    responses={200: Reply("A new token pair.", TokenPair), 401: INVALID_REFRESH},
)
async def token_refresh(request: web.Request) -> web.Response:
    """Exchange a refresh token for a new token pair; the presented token is revoked.

    Presenting a refresh token that was already exchanged is taken as theft: every token
    of that login, including the newest, is revoked and the answer is 401.
    """
    body = await parse_body(request, RefreshRequest)
    auth = request.app[AUTH]
    grant = await auth.refresh_tokens.rotate(body.refresh_token)
    if grant is None:
        raise unauthorized("invalid refresh token")
    user = await find_user(request.app[PG_POOL], grant.user_id)
    if user is None:
        await auth.refresh_tokens.revoke_login(grant.login_id)
        raise unauthorized("invalid refresh token")
    return _token_pair(auth, user, grant)


@routes.post("/api/auth/logout")
@operation(
    body=LogoutRequest,
    body_required=False,
    outage=True,
    responses={
        204: Reply(
            "Logged out; the session cookie is cleared.", None, headers={"Set-Cookie": SET_COOKIE}
        )
    },
)
async def logout(request: web.Request) -> web.Response:
    """End the browser session and clear its cookie; always 204.

    A bearer client may send `{refresh_token}` to revoke that token's whole login, which
    also ends its access tokens.
    """
    auth, settings = request.app[AUTH], request.app[SETTINGS]
    if request.can_read_body:
        body = await parse_body(request, LogoutRequest)
        if body.refresh_token:
            await auth.refresh_tokens.revoke(body.refresh_token)
    if session_id := request.cookies.get(settings.auth_cookie_name):
        await auth.sessions.revoke(session_id)
    response = web.Response(status=204)
    response.del_cookie(
        settings.auth_cookie_name,
        path="/",
        secure=not settings.is_local,
        httponly=True,
        samesite="Lax",
    )
    return response


async def _check_credentials(
    auth: Auth, request: web.Request, body: LoginRequest, device: str | None
) -> Principal:
    """The user the credentials belong to, as the login throttle admits and counts it."""
    address = request.remote or "unknown"
    async with auth.throttle.attempt(body.email, address, device) as attempt:
        identity = await find_password_identity(request.app[PG_POOL], body.email)
        matched = await auth.passwords.verify(
            body.password, None if identity is None else identity.password_hash
        )
        if identity is None or not matched:
            attempt.failed()
            raise unauthorized("invalid credentials")
        attempt.succeeded()
        return identity.user


async def _start_web_session(request: web.Request, user: Principal) -> web.Response:
    settings = request.app[SETTINGS]
    session_id = await request.app[AUTH].sessions.create(user.user_id)
    response = json_response({"session_established": True, "user_name": user.name})
    _set_cookie(
        request,
        response,
        settings.auth_cookie_name,
        session_id,
        settings.auth_refresh_token_ttl_seconds,
    )
    return response


def _set_cookie(
    request: web.Request, response: web.Response, name: str, value: str, max_age: int
) -> None:
    """HttpOnly, SameSite=Lax, the whole site, and Secure wherever browsers reach us over TLS."""
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        secure=not request.app[SETTINGS].is_local,
        httponly=True,
        samesite="Lax",
    )


def _token_pair(
    auth: Auth, user: Principal, grant: RefreshGrant, device_token: str | None = None
) -> web.Response:
    pair: dict[str, str | int] = {
        "access_token": auth.access_tokens.issue(user, grant.login_id),
        "refresh_token": grant.token,
        "token_type": "bearer",
        "expires_in": auth.access_tokens.ttl_seconds,
    }
    if device_token is not None:
        pair["device_token"] = device_token
    return json_response(pair)
