"""The job orchestrator: gRPC ``EnqueueJob`` publishing to NATS JetStream."""
