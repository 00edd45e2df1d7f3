"""Lambda entry of the `usage` function: builds its app from the shared layer."""

from spine.api.functions import usage_app
from spine.api.handler import make_handler
from spine.snapstart import enable

app = usage_app()
handler = make_handler(app)
enable(app, handler)
