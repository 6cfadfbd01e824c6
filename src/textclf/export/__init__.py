"""A fine-tuned Hugging Face directory -> ONNX -> INT8 -> accuracy gate -> a sealed model directory."""
