"""Scripts that drive AWS for textclf: image, training, tuning, endpoint, batch, API. See docs/sagemaker.md."""
