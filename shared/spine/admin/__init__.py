"""Operator tasks behind the admin web app: the worker's model lifecycle and a check
of a pasted models.yaml."""
