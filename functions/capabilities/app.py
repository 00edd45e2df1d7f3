"""Lambda entry of the `capabilities` function: builds its app from the shared layer.

Deployed, Lambda Web Adapter runs `app` under uvicorn (run.sh), so a streamed
capability's text reaches the client as it is generated and a review may outlast
API Gateway's buffered limit; `handler` (Mangum) serves buffered invocations."""

from spine.api.functions import capabilities_app
from spine.api.handler import make_handler
from spine.web_adapter_tracing import WebAdapterTracing

app = capabilities_app()
# Deployed behind the adapter, each request is a subsegment of the invocation's trace.
app.add_middleware(WebAdapterTracing)
handler = make_handler(app)
