"""Tasks: the state machine, the service (create, get, list, cancel) and finalisation."""
