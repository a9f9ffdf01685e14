"""Wake-word training: synthetic voices, confusables, augmentation, a small ONNX head."""
