"""Pipelines: stored, versioned definitions of steps over models, checked whole."""
