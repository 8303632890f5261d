"""A database as the reference service leaves it, for the adoption tests.

The schema is written here from the facts of the reference's public Reshape
migrations (table, column, type, nullability, default, key and index names):
its tables as they stand after 001-006 (``schema.sql``) or 001-008
(``configs.sql`` adds the user-config tables), Reshape's own bookkeeping, the
views of its last migration's schema, and the checkpoint tables LangGraph
creates beside them. Users are made the reference's way (``passwords.py``).
"""
