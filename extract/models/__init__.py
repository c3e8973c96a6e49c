"""Importing this package registers every extractor (architectures only; nothing is built or loaded)."""
from extract.models import debug, efficientat, mobilenet  # noqa: F401  (registration on import)
from extract.models import iov  # noqa: F401,E402  (trained here: python -m extract train-iov)
