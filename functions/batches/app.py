"""Lambda entry of the `batches` function: OpenAI's Files, Uploads and Batch APIs."""

from spine.api.functions import batches_app
from spine.api.handler import make_handler
from spine.snapstart import enable

app = batches_app()
handler = make_handler(app)
enable(app, handler)
