"""Password hashes in the reference's scrypt format."""

from __future__ import annotations

import base64
import hashlib

import pytest

from exobrain.auth import hash_password, unmatchable_hash, verify_password


def test_hash_has_the_reference_format_and_parameters() -> None:
    encoded = hash_password("password123")
    scheme, salt_b64, key_b64 = encoded.split("$")
    assert scheme == "scrypt"
    salt, key = base64.b64decode(salt_b64), base64.b64decode(key_b64)
    assert key == hashlib.scrypt(b"password123", salt=salt, n=2**14, r=8, p=1, dklen=len(key))


def test_hashes_are_salted() -> None:
    assert hash_password("same") != hash_password("same")


@pytest.mark.parametrize(
    "encoded", ["", "scrypt$", "scrypt$!!$!!", "bcrypt$c2FsdA==$a2V5", "scrypt$c2FsdA=="]
)
def test_malformed_hash_never_matches(encoded: str) -> None:
    assert not verify_password("password123", encoded)


def test_wrong_password_does_not_match() -> None:
    encoded = hash_password("password123")
    assert verify_password("password123", encoded)
    assert not verify_password("password124", encoded)


def test_unmatchable_hash_is_well_formed_and_matches_nothing() -> None:
    encoded = unmatchable_hash()
    scheme, salt_b64, key_b64 = encoded.split("$")
    assert scheme == "scrypt"
    assert len(base64.b64decode(salt_b64)) == 16
    assert len(base64.b64decode(key_b64)) == 64
    assert encoded != unmatchable_hash()
    assert not verify_password("password123", encoded)
