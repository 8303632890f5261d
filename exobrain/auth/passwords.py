"""scrypt password hashes in the reference format ``scrypt$<salt b64>$<key b64>``.

Parameters are fixed by that format (n=2^14, r=8, p=1, 64-byte key). The
reference writes both parts in the URL-safe base64 alphabet (``-`` and ``_``),
and so does this module, so that a rollback to the reference still logs every
user in; hashes this service wrote in the standard alphabet (``+`` and ``/``)
before it switched are verified too. Hashing costs ~50 ms of CPU: callers on
the event loop must run it in a thread.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets

_N, _R, _P, _KEY_BYTES, _SALT_BYTES = 2**14, 8, 1, 64, 16


def _derive(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=_KEY_BYTES, maxmem=64 * 1024 * 1024
    )


def _encode(salt: bytes, key: bytes) -> str:
    salt_b64, key_b64 = (base64.urlsafe_b64encode(part).decode() for part in (salt, key))
    return f"scrypt${salt_b64}${key_b64}"


def _decode(text: str) -> bytes:
    """Either alphabet: ``-`` and ``_`` are read as ``+`` and ``/``, which stay valid."""
    return base64.b64decode(text, altchars=b"-_", validate=True)


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(_SALT_BYTES)
    return _encode(salt, _derive(password, salt))


def unmatchable_hash() -> str:
    """A well-formed hash of random bytes: checking a password against it costs what a
    real check costs, so an unknown account answers as slowly as a wrong password."""
    return _encode(secrets.token_bytes(_SALT_BYTES), secrets.token_bytes(_KEY_BYTES))


def verify_password(password: str, encoded: str) -> bool:
    """Constant-time check; a malformed hash simply does not match."""
    scheme, _, rest = encoded.partition("$")
    salt_b64, _, key_b64 = rest.partition("$")
    try:
        salt, key = _decode(salt_b64), _decode(key_b64)
    except (binascii.Error, ValueError):
        return False
    if scheme != "scrypt" or not salt or not key:
        return False
    return hmac.compare_digest(_derive(password, salt), key)
