"""v1-style scripts (written from azureml-core's public documentation) run end to end against a real
server: local service ordering and ports, no-code ONNX and scikit-learn, a pinned Python version."""
