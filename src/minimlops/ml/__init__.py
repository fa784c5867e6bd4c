"""Machine learning as pure functions: features, training, evaluation, artifacts."""
