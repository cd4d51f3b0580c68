"""The per-frame pipeline of one stream (read ahead, detect, track, draw, write), its per-stage profiler,
progress lines and signal handling."""
