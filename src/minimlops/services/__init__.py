"""Pipeline logic: handlers of events, talking only to ports."""
