"""Other doors onto the same task engine, ledger and limits: the OpenAI-compatible images API."""
