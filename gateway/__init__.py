"""The VoxLens gateway: gRPC server, router, model backends, tools, memory, metrics.

httpx logs every request URL at INFO, and a weather or search URL carries the user's words
(`?name=<city>`, `?q=<question>`): the gateway keeps those loggers at WARNING so logs at info
never hold what users said (set them lower by hand to debug a tool).
"""
import logging

for _name in ("httpx", "httpcore"):
    if logging.getLogger(_name).level < logging.WARNING:
        logging.getLogger(_name).setLevel(logging.WARNING)
