"""Who a request acts for."""

from __future__ import annotations

import uuid
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated user, read from the database when the request is authenticated."""

    user_id: uuid.UUID
    email: str
    name: str
