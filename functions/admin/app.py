"""Lambda entry of the `admin` function: builds its app from the shared layer."""

from spine.api.functions import admin_app
from spine.api.handler import make_handler
from spine.snapstart import enable

app = admin_app()
handler = make_handler(app)
enable(app, handler)
