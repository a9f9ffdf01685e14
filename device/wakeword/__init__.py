"""Wake word: the openWakeWord front end, the first-stage detector, the verifier that confirms each fire,
the trainer and the evaluator. The device imports the detector from here."""
from device.wakeword.detector import (  # noqa: F401
    FRAME_SAMPLES, SAMPLE_RATE_HZ, Detection, Trigger, WakeHead, WakeWordDetector, WakeWordError, count_triggers,
)
