"""The operator's use cases (``/admin/v1`` and the CLI's admin commands): each write is one
service call that also appends its audit entry, in the caller's transaction."""
