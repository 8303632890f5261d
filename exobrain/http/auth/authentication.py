"""The one way a request proves who it acts for: a Bearer access token, else the session cookie.

Protected routes use :func:`authenticated`; WebSocket upgrades call
:func:`authenticate` before ``prepare``. Every call reads the user by primary
key and checks that the login or session is still live, so a deleted user or
a revoked session is refused at once, not when a token expires. Concurrent
calls share those reads (one query, one Redis round trip), each answered by a
read that started after the call: as fresh as a read of its own, at a fraction
of the cost (:mod:`exobrain.auth.batching`).

Routes whose own Redis script can check the login or session (cached journal
pages) take :func:`credential_of` instead and look the user up in
:data:`RECENT_USERS`: revocation is still seen at once, a deleted user within
:data:`USER_ROW_SECONDS`.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler

from exobrain.auth import (
    AccessTokens,
    Batcher,
    Credential,
    DeviceTokens,
    InvalidTokenError,
    Limits,
    LoginThrottle,
    PasswordVerifier,
    Principal,
    Recent,
    RefreshTokens,
    WebSessions,
    default_workers,
)
from exobrain.http.errors import JsonError
from exobrain.http.resources import PG_POOL, REDIS, SETTINGS
from exobrain.store.users import find_users

#: A handler that needs the caller: :func:`authenticated` supplies the principal.
AuthenticatedHandler = Callable[[web.Request, Principal], Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Auth:
    """The app's auth components, built once Redis is up."""

    access_tokens: AccessTokens
    refresh_tokens: RefreshTokens
    sessions: WebSessions
    throttle: LoginThrottle
    devices: DeviceTokens
    passwords: PasswordVerifier


AUTH = web.AppKey("auth", Auth)
#: Users by primary key, batched: what every authenticated request reads.
USERS: web.AppKey[Batcher[uuid.UUID, Principal | None]] = web.AppKey("users")
#: How long a user's row read by :data:`RECENT_USERS` is reused: the bound on how long a user
#: deleted from the database may still read their cached journal pages on an instance.
USER_ROW_SECONDS = 1.0
#: :data:`USERS`, each answer reused for :data:`USER_ROW_SECONDS`.
RECENT_USERS: web.AppKey[Recent[uuid.UUID, Principal | None]] = web.AppKey("recent_users")


async def auth_ctx(app: web.Application) -> AsyncIterator[None]:
    settings, client = app[SETTINGS], app[REDIS]
    prefix = f"{settings.redis_key_prefix}auth:"
    ttl = settings.auth_refresh_token_ttl_seconds
    passwords = PasswordVerifier(default_workers())
    app[AUTH] = Auth(
        access_tokens=AccessTokens(
            settings.auth_jwt_secret.get_secret_value(),
            settings.auth_jwt_algorithm,
            settings.auth_access_token_ttl_seconds,
        ),
        refresh_tokens=RefreshTokens(client, prefix, ttl),
        sessions=WebSessions(client, prefix, ttl),
        throttle=LoginThrottle(
            client,
            prefix,
            Limits(
                per_pair=settings.auth_login_max_failures,
                per_email=settings.auth_login_max_failures_per_email,
                per_address=settings.auth_login_max_failures_per_address,
                window_seconds=settings.auth_login_failure_window_seconds,
            ),
        ),
        devices=DeviceTokens(
            settings.auth_jwt_secret.get_secret_value(), settings.auth_device_cookie_ttl_seconds
        ),
        passwords=passwords,
    )
    app[USERS] = Batcher(functools.partial(find_users, app[PG_POOL]), default=None)
    app[RECENT_USERS] = Recent(app[USERS], USER_ROW_SECONDS)
    yield
    passwords.close()


def unauthorized(detail: str = "authentication required") -> JsonError:
    return JsonError(401, detail, headers={hdrs.WWW_AUTHENTICATE: "Bearer"})


def bearer_token(request: web.Request) -> str | None:
    scheme, _, token = request.headers.get(hdrs.AUTHORIZATION, "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


def credential_of(request: web.Request) -> Credential:
    """The login or session the request presents, for a script to check; a 401
    :class:`JsonError` when there is none or the token is bad (as :func:`authenticate`)."""
    auth = request.app[AUTH]
    if (token := bearer_token(request)) is not None:
        try:
            return auth.refresh_tokens.credential(auth.access_tokens.decode(token))
        except InvalidTokenError:
            raise unauthorized() from None
    if session_id := request.cookies.get(request.app[SETTINGS].auth_cookie_name):
        return auth.sessions.credential(session_id)
    raise unauthorized()


async def authenticate(request: web.Request) -> Principal:
    """The caller, or a 401 :class:`JsonError`.

    A Bearer header, when present, decides alone: a bad token is refused even if
    a valid cookie came with it. For a token, the login's liveness (Redis) and
    the user's row (PostgreSQL) are independent and looked up at once.
    """
    auth, users = request.app[AUTH], request.app[USERS]
    principal: Principal | None = None
    if (token := bearer_token(request)) is not None:
        try:
            claims = auth.access_tokens.decode(token)
        except InvalidTokenError:
            raise unauthorized() from None
        live, principal = await asyncio.gather(
            auth.refresh_tokens.is_live(claims.login_id), users.get(claims.user_id)
        )
        if not live:
            principal = None
    elif session_id := request.cookies.get(request.app[SETTINGS].auth_cookie_name):
        user_id = await auth.sessions.user_id(session_id)
        principal = None if user_id is None else await users.get(user_id)
    if principal is None:
        raise unauthorized()
    return principal


def authenticated(handler: AuthenticatedHandler) -> Handler:
    """Make ``handler`` a route that answers 401 unless :func:`authenticate` succeeds."""

    @functools.wraps(handler)
    async def route(request: web.Request) -> web.StreamResponse:
        return await handler(request, await authenticate(request))

    return route
