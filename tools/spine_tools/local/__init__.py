"""A local emulator of `sam local start-api` / `sam local invoke` for Spine's template.

Reads `template.yaml`, serves every `Api` event of every function on one port with
API Gateway REST (payload v1) proxy events, and runs each handler the way Lambda
does: one request per container at a time. Development only: no Lambda function
imports this package.

Modules: `template` (parse the template), `intrinsics` (resolve !Ref/!Sub/!If),
`routing` (match API Gateway paths), `events` (HTTP <-> proxy events),
`environment` (variables per function), `runtime` (load handlers, containers),
`samconfig` (parameter overrides), `server` (the ASGI app).
"""
