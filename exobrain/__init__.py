"""Exobrain assistant backend: realtime chat, daily journal and knowledge-update jobs."""
