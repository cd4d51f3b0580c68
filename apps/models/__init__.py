"""Getting the detector a run needs: weights resolved from the zoo, the input fitted to the source, the int8
model calibrated once and cached (`prepare_detector` is the one entry point)."""
