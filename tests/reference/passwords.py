"""Password hashes made the reference's way: scrypt (n=2^14, r=8, p=1, its 64-byte
default key) of a 16-byte salt, both in padded URL-safe base64."""

from __future__ import annotations

import base64
import functools
import hashlib
import itertools


def reference_hash(password: str, salt: bytes) -> str:
    key = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    parts = (base64.urlsafe_b64encode(part).decode() for part in (salt, key))
    return "scrypt$" + "$".join(parts)


@functools.cache
def reference_hash_with_both_marks(password: str) -> str:
    """A reference hash of ``password`` holding ``-`` and ``_``, the characters standard
    base64 does not have (salts are tried in order, so the result is always the same)."""
    for counter in itertools.count():
        encoded = reference_hash(password, counter.to_bytes(16, "big"))
        if "-" in encoded and "_" in encoded:
            return encoded
    raise AssertionError("unreachable")
