"""Plain-Python domain: table schemas, events and pure decisions."""
