"""Lambda entry of the `sessions` function: builds its app from the shared layer."""

from spine.api.functions import sessions_app
from spine.api.handler import make_handler
from spine.snapstart import enable

app = sessions_app()
handler = make_handler(app)
enable(app, handler, calls_models=True)
