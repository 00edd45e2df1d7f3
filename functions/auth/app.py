"""Lambda entry of the `auth` function: builds its app from the shared layer."""

from spine.api.functions import auth_app
from spine.api.handler import make_handler
from spine.snapstart import enable

app = auth_app()
handler = make_handler(app)
enable(app, handler)
