"""Entry points: the command line, the HTTP server and the local runtime."""
