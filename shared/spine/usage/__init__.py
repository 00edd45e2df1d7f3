"""The usage API's logic: reports, prices and cost estimates (the rows themselves
are written by spine.ledger)."""
