"""The shared contract every role uses: the one-line user errors, JSON file reading, the model schema and the CSV
cell grammar. It imports nothing else from this repository, so each role's package depends only on it."""
