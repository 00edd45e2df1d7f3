"""Cost of a call, from models.yaml prices and the provider's reported usage."""
