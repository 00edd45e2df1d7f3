"""Lambda entry of the `prompts` function: builds its app from the shared layer."""

from spine.api.functions import prompts_app
from spine.api.handler import make_handler
from spine.snapstart import enable

app = prompts_app()
handler = make_handler(app)
enable(app, handler, calls_models=True)
