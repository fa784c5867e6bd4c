"""The HTTP API's routes, one module per part: serving, models, monitoring,
operations. Each builds an ``APIRouter`` from the :class:`Context` that
:func:`minimlops.entrypoints.http.app.create_app` makes once per app."""
