"""Lambda entry of the `chat` function: builds its app from the shared layer.

Deployed, Lambda Web Adapter runs `app` under uvicorn (run.sh) so streamed answers
reach the client chunk by chunk; `handler` (Mangum) serves buffered invocations."""

from spine.api.functions import chat_app
from spine.api.handler import make_handler
from spine.snapstart import enable
from spine.web_adapter_tracing import WebAdapterTracing

app = chat_app()
# Deployed behind the adapter, each request is a subsegment of the invocation's trace.
app.add_middleware(WebAdapterTracing)
handler = make_handler(app)
# SnapStart hooks run in Lambda's own Python runtime, which serves `handler`; under
# the web adapter (deployed) uvicorn's process never gets them (docs/deploying.md).
enable(app, handler, calls_models=True)
