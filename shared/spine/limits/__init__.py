"""Exact rate limits and USD budgets, counted in Postgres (see docs/limits.md)."""
