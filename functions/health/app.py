"""Lambda entry of the `health` function: builds its app from the shared layer."""

from spine.api.functions import health_app
from spine.api.handler import make_handler

app = health_app()
handler = make_handler(app)
