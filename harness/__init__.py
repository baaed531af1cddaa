"""Test and demo harness, never shipped in an image: the SageMaker SDK's local mode driven with this project's
images, and SageMaker-shaped data capture files generated from a table."""
