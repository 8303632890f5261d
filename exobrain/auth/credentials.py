"""Where Redis says whose a presented credential is, for checks that ride on another script.

A route that makes a Redis round trip anyway (the journal read cache) can check
the caller's login or session in the same script instead of in a round trip of
its own: it reads ``HGET key field`` (a token login) or ``GET key`` (a browser
session); nil means revoked, expired or unknown, exactly as the separate checks
would find it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Credential:
    """A login or session to look up: ``HGET key field``, or ``GET key`` when ``field`` is "".

    ``claimed`` is the user a verified access token names (None for a session,
    whose user is only known once read); the owner read must match it.
    """

    key: str
    field: str
    claimed: uuid.UUID | None
