"""VoxLens: shared infrastructure (configuration, timing, CLI) for the device and gateway packages."""

__version__ = "0.1.0"
