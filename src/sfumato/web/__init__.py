"""Pages for people: the model documentation rendered from the catalog."""
