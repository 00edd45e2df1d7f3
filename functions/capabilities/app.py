"""Lambda entry of the `capabilities` function: builds its app from the shared layer."""

from spine.api.functions import capabilities_app
from spine.api.handler import make_handler
from spine.snapstart import enable

app = capabilities_app()
handler = make_handler(app)
enable(app, handler, calls_models=True)
