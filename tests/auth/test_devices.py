"""Device tokens name a device only for the email they were issued to, until they expire."""

from __future__ import annotations

import time

from exobrain.auth import DeviceTokens

SECRET = "s" * 64
EMAIL = "Ada.Lovelace@Example.test"


def test_a_token_names_its_device_for_its_email_in_any_case() -> None:
    devices = DeviceTokens(SECRET, ttl_seconds=3600)
    token = devices.issue(EMAIL)
    nonce = devices.device(EMAIL, token)
    assert nonce is not None
    assert token.startswith(f"{nonce}.")
    assert devices.device(EMAIL.upper(), token) == nonce
    assert devices.device("grace.hopper@example.test", token) is None
    assert devices.device(EMAIL, devices.issue(EMAIL)) != nonce  # a new device every login


def test_anything_else_names_no_device() -> None:
    devices = DeviceTokens(SECRET, ttl_seconds=3600)
    nonce, expires, signature = devices.issue(EMAIL).split(".")
    for token in (
        None,
        "",
        f"{nonce}.{expires}",
        f"{nonce}.{expires}.{signature}x",
        f"{nonce}x.{expires}.{signature}",
        f"{nonce}.{int(expires) + 1}.{signature}",
        f"{nonce}.{expires}.{signature}" + "." * 200,
        f"{nonce}.\u0663.{signature}",  # a digit int() reads, but not ASCII
        DeviceTokens("another secret", ttl_seconds=3600).issue(EMAIL),
        devices.issue(EMAIL, now=time.time() - 3601),
    ):
        assert devices.device(EMAIL, token) is None, token


def test_an_email_python_cannot_encode_is_still_signed() -> None:
    devices = DeviceTokens(SECRET, ttl_seconds=3600)
    email = "\ud800@example.test"  # a lone surrogate, as JSON may carry one
    assert devices.device(email, devices.issue(email)) is not None
