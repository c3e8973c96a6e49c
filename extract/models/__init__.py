"""Importing this package registers every extractor (architectures only; nothing is built or loaded)."""
