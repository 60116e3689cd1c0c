"""The Scorer and its parts: options, the streaming pipeline, tiles, the feature cache."""
