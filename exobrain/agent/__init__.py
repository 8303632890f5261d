"""The chat agent: model streaming loop, tools, and the mock model."""
