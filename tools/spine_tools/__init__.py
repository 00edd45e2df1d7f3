"""Spine's tooling: the `spine` command line and the local emulator of
`sam local start-api`. It runs on developer and operator machines, never in Lambda:
the shared layer holds `spine` alone, and nothing in `spine` imports this package."""
