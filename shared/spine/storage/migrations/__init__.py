"""Versioned SQL migrations, shipped as package data.

Files are named `NNNN_description.sql` and applied in version order by
`spine.storage.migrate`, each in its own transaction. Never edit a file once it has
been applied anywhere: the runner records a checksum and refuses an edited file. Add
a new file instead.
"""
