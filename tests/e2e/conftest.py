"""End-to-end tests need the llama-server build and the bundled model (the
Makefile provides both); they reuse the worker tests' fixtures for them."""

from tests.worker.conftest import llama_server, model_file

__all__ = ["llama_server", "model_file"]
