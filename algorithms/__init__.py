"""Training side of the BYOC images: hyperparameters, data channels, algorithms, artifacts."""
