"""The local server's process runtime (``minimlops up``): the data home's
lock, the listening sockets, uvicorn, the bus consumers beside it and the
extra serving processes."""
