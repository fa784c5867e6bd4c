"""Entry points, by what runs: ``cli`` (the command line), ``http`` (the ASGI
app and its fast path), ``runtime`` (the local server's processes) and ``gcp``
(deployment and the Cloud Run functions)."""
