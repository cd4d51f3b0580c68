"""Benchmarks that print measured numbers (MOT17 accuracy, tracker and detector speed)."""
