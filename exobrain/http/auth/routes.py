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


SET_COOKIE = Header("The session cookie (HttpOnly, SameSite=Lax).", required=False)
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
            "Logged in: a web session (cookie set) or a token pair.",
            WebSession | TokenPair,
            headers={"Set-Cookie": SET_COOKIE},
        ),
        401: Reply("Wrong email or password."),
        429: throttled("Too many failed logins for this email or address."),
    },
)
async def login(request: web.Request) -> web.Response:
    """Log in with email and password.

    `session_mode=web` with `issuance_policy=session` (the defaults) sets an HttpOnly
    session cookie and answers `{session_established, user_name}`; any other combination
    answers `{access_token, refresh_token, token_type, expires_in}`. 401 on wrong
    credentials; 429 with `Retry-After` after too many failures for the email or address.
    """
    body = await parse_body(request, LoginRequest)
    auth = request.app[AUTH]
    try:
        user = await _check_credentials(auth, request, body)
    except LoginThrottledError as exc:
        raise JsonError(
            429,
            "too many failed logins, try again later",
            headers={hdrs.RETRY_AFTER: str(exc.retry_after)},
        ) from None
    if body.session_mode == "web" and body.issuance_policy == "session":
        return await _start_web_session(request, user)
    return _token_pair(auth, user, await auth.refresh_tokens.issue(user.user_id))


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


async def _check_credentials(auth: Auth, request: web.Request, body: LoginRequest) -> Principal:
    """The user the credentials belong to, as the login throttle admits and counts it."""
    async with auth.throttle.attempt(body.email, request.remote or "unknown") as attempt:
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
    response.set_cookie(
        settings.auth_cookie_name,
        session_id,
        max_age=settings.auth_refresh_token_ttl_seconds,
        path="/",
        secure=not settings.is_local,
        httponly=True,
        samesite="Lax",
    )
    return response


def _token_pair(auth: Auth, user: Principal, grant: RefreshGrant) -> web.Response:
    return json_response(
        {
            "access_token": auth.access_tokens.issue(user, grant.login_id),
            "refresh_token": grant.token,
            "token_type": "bearer",
            "expires_in": auth.access_tokens.ttl_seconds,
        }
    )
