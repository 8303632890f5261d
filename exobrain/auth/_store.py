"""How auth state sits in Redis: bearer secrets only as digests, replies read as text."""

from __future__ import annotations

import hashlib


def digest(secret: str) -> str:
    """sha256 of ``secret`` in hex: a copy of Redis yields no usable session or token.

    A plain hash suffices (no salt, no stretching): what is hashed here is either
    256 random bits or, for throttle keys, an email that is not secret anyway.
    """
    return hashlib.sha256(secret.encode()).hexdigest()


def text(reply: bytes | str) -> str:
    """A Redis reply as ``str``, whether or not the client decodes responses."""
    return reply.decode() if isinstance(reply, bytes) else reply
