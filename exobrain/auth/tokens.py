"""Access tokens: short-lived JWTs signed with ``AUTH_JWT_SECRET``.

Besides the user (``sub``, ``email``, ``name``) a token names its login in
``sid``: revoking the login (logout, or a replayed refresh token) ends its
access tokens at once instead of at ``exp``.

A client presents the same token on every request until it refreshes, and
PyJWT takes ~30 µs to check one: tokens already checked are remembered (the
check is a pure function of the token and the secret), and only their expiry
is checked again.
"""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass

import jwt

from .principal import Principal

_REQUIRED_CLAIMS = ["exp", "iat", "sub", "sid"]
#: Checked tokens remembered per process, under 1 KiB each.
_REMEMBERED = 4096


class InvalidTokenError(Exception):
    """The token is malformed, forged, expired, or signed with another algorithm."""


@dataclass(frozen=True, slots=True)
class AccessClaims:
    user_id: uuid.UUID
    login_id: str


class AccessTokens:
    """Issues and checks access tokens with one configured HMAC algorithm."""

    def __init__(self, secret: str, algorithm: str, ttl_seconds: int) -> None:
        self._secret = secret
        self._algorithm = algorithm
        self.ttl_seconds = ttl_seconds
        self._checked: dict[str, tuple[AccessClaims, int]] = {}  # token → claims, exp

    def issue(self, principal: Principal, login_id: str) -> str:
        """A token valid for at least ``ttl_seconds``: ``exp`` is rounded up, never down,
        so a client refreshing just before ``expires_in`` runs out is never refused."""
        now = time.time()
        claims = {
            "sub": str(principal.user_id),
            "email": principal.email,
            "name": principal.name,
            "sid": login_id,
            "iat": int(now),
            "exp": math.ceil(now) + self.ttl_seconds,
        }
        return jwt.encode(claims, self._secret, algorithm=self._algorithm)

    def decode(self, token: str) -> AccessClaims:
        """The claims of a token this service signed; :class:`InvalidTokenError` otherwise.

        Only the configured algorithm is accepted, which rules out ``alg: none`` and
        tokens re-signed with another algorithm.
        """
        checked = self._checked.get(token)
        if checked is not None and time.time() < checked[1]:  # PyJWT's test of ``exp``
            return checked[0]
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=[self._algorithm],
                options={"require": _REQUIRED_CLAIMS},
            )
            decoded = AccessClaims(uuid.UUID(claims["sub"]), str(claims["sid"]))
        except (jwt.PyJWTError, ValueError) as exc:
            raise InvalidTokenError(str(exc)) from exc
        if len(self._checked) >= _REMEMBERED:
            del self._checked[next(iter(self._checked))]  # the oldest
        self._checked[token] = (decoded, int(claims["exp"]))
        return decoded
