"""Generated gRPC stubs for the job orchestrator (``scripts/gen-proto`` writes them)."""
