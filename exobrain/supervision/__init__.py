"""The supervisor tree over the actors, its health snapshot, and the loop bridge."""
