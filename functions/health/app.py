"""Lambda entry of the `health` function: builds its app from the shared layer."""

from spine.api.functions import health_app
from spine.api.handler import make_handler
from spine.snapstart import enable

app = health_app()
handler = make_handler(app)
enable(app, handler)
