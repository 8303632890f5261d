"""Device tokens: a client's signed proof that it logged in to an account before.

OWASP's "Slow Down Online Guessing Attacks with Device Cookies": each
successful login gives the client a token bound to the email it logged in
with; a login that presents a valid one for its email is told apart from
everyone else's, so guesses from unknown clients can lock the email for
unknown clients only, and a known device's own failures lock that device only
(:mod:`.throttle`).

A token is ``<nonce>.<expires>.<signature>``: 16 random bytes, a Unix time, and
an HMAC-SHA256 over the lower-cased email, the nonce and the expiry, keyed
with a key derived from ``AUTH_JWT_SECRET``. The email is not in the token
(it is checked against the one the login names), and nothing is stored: the
nonce alone names the device to the throttle.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time

#: Longer values are refused unread: a real token is about 80 characters.
_MAX_LENGTH = 200


class DeviceTokens:
    def __init__(self, secret: str, ttl_seconds: int) -> None:
        # A key of its own: a device token's signature can never pass for a JWT's.
        self._key = hmac.new(secret.encode(), b"exobrain device token", hashlib.sha256).digest()
        self.ttl_seconds = ttl_seconds

    def issue(self, email: str, *, now: float | None = None) -> str:
        """A new token for ``email``, valid for ``ttl_seconds`` from ``now``."""
        nonce = secrets.token_urlsafe(16)
        expires = int(time.time() if now is None else now) + self.ttl_seconds
        return f"{nonce}.{expires}.{self._sign(email, nonce, expires)}"

    def device(self, email: str, token: str | None) -> str | None:
        """The device (the token's nonce) when ``token`` is valid for ``email``, else None:
        absent, malformed, forged, expired or another email's."""
        if not token or len(token) > _MAX_LENGTH or not token.isascii():
            return None
        nonce, _, rest = token.partition(".")
        expires_text, _, signature = rest.partition(".")
        if not nonce or not expires_text.isdigit():
            return None
        expires = int(expires_text)
        expected = self._sign(email, nonce, expires)
        if not hmac.compare_digest(signature.encode(), expected.encode()) or expires <= time.time():
            return None
        return nonce

    def _sign(self, email: str, nonce: str, expires: int) -> str:
        message = f"{email.lower()}\n{nonce}\n{expires}".encode(errors="surrogatepass")
        mac = hmac.new(self._key, message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
