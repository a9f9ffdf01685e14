"""The VoxLens device: audio, wake word, VAD, STT, TTS, command grammar, actions, turn engine, gRPC client."""
