"""``minimlops bench``: serving, ingestion and model quality, measured against
baselines in the same run.

A package of its own, beside ``minimlops``: the server, the pipeline and the
Cloud bundle never import it (an import-linter contract holds that), so the
benchmarks and their baselines (the bare ASGI floor, pandas) neither ship to
Google Cloud nor weigh on a server's start. Only the command line's ``bench``
command loads it, lazily.
"""
