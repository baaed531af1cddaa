"""Step Functions pipelines that train, gate and deploy the images, and what runs them locally."""
