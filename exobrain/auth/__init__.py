"""Authentication: password hashes today; sessions and tokens build on them."""

from .passwords import hash_password, verify_password

__all__ = ["hash_password", "verify_password"]
