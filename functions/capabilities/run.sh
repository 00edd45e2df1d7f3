#!/bin/sh
# Startup command of a streaming function (chat, capabilities) under AWS Lambda Web Adapter (Handler: run.sh,
# AWS_LAMBDA_EXEC_WRAPPER=/opt/bootstrap): uvicorn serves the same FastAPI app the
# Mangum `handler` wraps, and the adapter streams its responses back through Lambda
# (AWS_LWA_INVOKE_MODE=response_stream). The spine layer is mounted at /opt; its
# packages live in /opt/python. SPINE_ASGI_APP names the app (template.yaml).
cd "$LAMBDA_TASK_ROOT" || exit 1
PYTHONPATH="/opt/python:${LAMBDA_TASK_ROOT}${PYTHONPATH:+:$PYTHONPATH}" exec python -m uvicorn \
    --host 127.0.0.1 --port "${AWS_LWA_PORT:-8080}" \
    --no-access-log --timeout-keep-alive 300 \
    "${SPINE_ASGI_APP:-app:app}"
