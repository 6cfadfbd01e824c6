"""``textclf train``: hyperparameters, data, the pretrained encoder, the loop, checkpoints, reports."""
