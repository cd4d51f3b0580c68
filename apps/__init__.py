"""The `track` program, the frame pipeline and the profiler."""
