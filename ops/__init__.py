"""Scripts that drive AWS for textclf: image, training, tuning, endpoint, batch, API.

See the README's "SageMaker usage" section.
"""
