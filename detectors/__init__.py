"""YOLOX and YOLOv5 detectors in PyTorch, checkpoint loading, pre/post-processing."""
