"""Lambda entry of the `models` function: builds its app from the shared layer."""

from spine.api.functions import models_app
from spine.api.handler import make_handler
from spine.snapstart import enable

app = models_app()
handler = make_handler(app)
enable(app, handler)
