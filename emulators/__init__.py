"""What SageMaker does around a container, done on this machine for users: batch transform with DataProcessing,
the data-capturing endpoint proxy, and the serving entry point run as a local process. Host-side, not in images."""
