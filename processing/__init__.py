"""Processing jobs (SageMaker Processing contract): python -m processing.preprocess."""
