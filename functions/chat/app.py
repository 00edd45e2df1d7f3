"""Lambda entry of the `chat` function: builds its app from the shared layer."""

from spine.api.functions import chat_app
from spine.api.handler import make_handler

app = chat_app()
handler = make_handler(app)
