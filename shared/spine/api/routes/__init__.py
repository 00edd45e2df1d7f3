"""Routers, one module per endpoint group; a Lambda function mounts one or more."""
