"""Tests of the supervisor tree, the actor system and the loop bridge (DESIGN.md §3 and §4)."""
