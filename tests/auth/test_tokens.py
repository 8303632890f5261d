"""Access tokens accept exactly what this service signed, with the configured algorithm."""

from __future__ import annotations

import time
import uuid

import jwt
import pytest

from exobrain.auth import AccessTokens, InvalidTokenError, Principal

SECRET = "s" * 64
USER = Principal(uuid.uuid4(), "ada@example.test", "Ada")


def test_issued_token_round_trips_with_the_reference_claims() -> None:
    tokens = AccessTokens(SECRET, "HS384", ttl_seconds=900)
    before = time.time()
    token = tokens.issue(USER, "login-1")
    claims = jwt.decode(token, SECRET, algorithms=["HS384"])
    assert (claims["sub"], claims["email"], claims["name"], claims["sid"]) == (
        str(USER.user_id),
        USER.email,
        USER.name,
        "login-1",
    )
    assert claims["iat"] <= before
    assert before + 900 <= claims["exp"] <= before + 901  # never shorter than promised
    decoded = tokens.decode(token)
    assert (decoded.user_id, decoded.login_id) == (USER.user_id, "login-1")


def claims(**changes: object) -> dict[str, object]:
    now = int(time.time())
    base: dict[str, object] = {"sub": str(USER.user_id), "sid": "l", "iat": now, "exp": now + 60}
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


@pytest.mark.parametrize(
    "token",
    [
        pytest.param(jwt.encode(claims(), "t" * 64, algorithm="HS256"), id="other secret"),
        pytest.param(jwt.encode(claims(), SECRET, algorithm="HS512"), id="other algorithm"),
        pytest.param(jwt.encode(claims(), None, algorithm="none"), id="alg none"),
        pytest.param(jwt.encode(claims(exp=1), SECRET, algorithm="HS256"), id="expired"),
        pytest.param(jwt.encode(claims(exp=None), SECRET, algorithm="HS256"), id="no exp"),
        pytest.param(jwt.encode(claims(iat=None), SECRET, algorithm="HS256"), id="no iat"),
        pytest.param(jwt.encode(claims(sub=None), SECRET, algorithm="HS256"), id="no sub"),
        pytest.param(jwt.encode(claims(sid=None), SECRET, algorithm="HS256"), id="no sid"),
        pytest.param(jwt.encode(claims(sub="x"), SECRET, algorithm="HS256"), id="sub not a uuid"),
        pytest.param(
            jwt.encode(claims(iat=int(time.time()) + 3600), SECRET, algorithm="HS256"),
            id="issued in the future",
        ),
        pytest.param("a.b.c", id="garbage"),
    ],
)
def test_anything_else_is_refused(token: str) -> None:
    tokens = AccessTokens(SECRET, "HS256", ttl_seconds=60)
    assert tokens.decode(jwt.encode(claims(), SECRET, algorithm="HS256")).login_id == "l"
    with pytest.raises(InvalidTokenError):
        tokens.decode(token)
