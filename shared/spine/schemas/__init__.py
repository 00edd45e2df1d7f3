"""Wire shapes: OpenAI-compatible requests and responses."""
