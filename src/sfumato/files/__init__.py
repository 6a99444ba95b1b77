"""Files this server issued: signed media URLs, outputs, and references to them."""
