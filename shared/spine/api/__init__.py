"""HTTP layer: FastAPI apps for the Lambda functions and the one mapping from domain
errors to OpenAI-style error bodies."""
