"""The ledger's write side: the one usage row of every model call, its cost, and
the spool that keeps a row the database could not take (read side: spine.usage)."""
