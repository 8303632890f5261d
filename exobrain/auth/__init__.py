"""Authentication: passwords, browser sessions, access and refresh tokens, login throttling
with device tokens."""

from .batching import Batcher
from .credentials import Credential
from .devices import DeviceTokens
from .passwords import hash_password, unmatchable_hash, verify_password
from .principal import Principal
from .recent import Recent
from .refresh import RefreshGrant, RefreshTokens
from .sessions import WebSessions
from .throttle import Attempt, Limits, LoginThrottle, LoginThrottledError
from .tokens import AccessClaims, AccessTokens, InvalidTokenError
from .verifier import PasswordVerifier, default_workers

__all__ = [
    "AccessClaims",
    "AccessTokens",
    "Attempt",
    "Batcher",
    "Credential",
    "DeviceTokens",
    "InvalidTokenError",
    "Limits",
    "LoginThrottle",
    "LoginThrottledError",
    "PasswordVerifier",
    "Principal",
    "Recent",
    "RefreshGrant",
    "RefreshTokens",
    "WebSessions",
    "default_workers",
    "hash_password",
    "unmatchable_hash",
    "verify_password",
]
