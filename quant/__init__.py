"""Post-training int8 quantization: observers, fusion, equalization, calibration, ONNX int8 export."""
