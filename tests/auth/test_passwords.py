"""Password hashes in the reference's scrypt format, read in both base64 alphabets."""

from __future__ import annotations

import base64
import hashlib

import pytest
from reference.passwords import reference_hash, reference_hash_with_both_marks

from exobrain.auth import hash_password, unmatchable_hash, verify_password


def test_hash_has_the_reference_format_parameters_and_alphabet() -> None:
    encoded = hash_password("password123")
    scheme, salt_b64, key_b64 = encoded.split("$")
    assert scheme == "scrypt"
    assert not {"+", "/"} & set(salt_b64 + key_b64)
    salt, key = base64.urlsafe_b64decode(salt_b64), base64.urlsafe_b64decode(key_b64)
    assert len(salt) == 16
    assert key == hashlib.scrypt(b"password123", salt=salt, n=2**14, r=8, p=1, dklen=64)
    assert reference_hash("password123", salt) == encoded  # what the reference would write


@pytest.mark.parametrize("password", ["password123", "correct horse battery", "pässwörd ✓"])
def test_hashes_made_the_reference_way_verify(password: str) -> None:
    encoded = reference_hash_with_both_marks(password)
    assert "-" in encoded
    assert "_" in encoded
    assert verify_password(password, encoded)
    assert not verify_password(password + "!", encoded)


def test_hashes_in_the_standard_alphabet_still_verify() -> None:
    encoded = reference_hash_with_both_marks("password123")
    standard = encoded.translate(str.maketrans("-_", "+/"))
    assert standard != encoded
    assert verify_password("password123", standard)
    assert not verify_password("password124", standard)


def test_hashes_are_salted() -> None:
    assert hash_password("same") != hash_password("same")


@pytest.mark.parametrize(
    "encoded",
    ["", "scrypt$", "scrypt$!!$!!", "bcrypt$c2FsdA==$a2V5", "scrypt$c2FsdA==", "scrypt$c2Fsd$a2V5"],
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
    assert len(base64.urlsafe_b64decode(salt_b64)) == 16
    assert len(base64.urlsafe_b64decode(key_b64)) == 64
    assert encoded != unmatchable_hash()
    assert not verify_password("password123", encoded)
