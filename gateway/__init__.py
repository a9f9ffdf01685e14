"""The VoxLens gateway: gRPC server, router, model backends, tools, memory, metrics."""
