"""The model catalog (catalog.toml) and the wake-word heads VoxLens trains."""
