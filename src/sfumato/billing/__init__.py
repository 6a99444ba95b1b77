"""Credits: reserve on create, settle on success, release on failure or cancel."""
