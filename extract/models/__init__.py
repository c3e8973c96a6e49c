"""Importing this package registers every extractor (architectures only; nothing is built or loaded)."""
from extract.models import debug, efficientat, mobilenet, openl3  # noqa: F401  (registration on import)
from extract.models import open_clip_vit, places365, torchvision_vit  # noqa: F401  (seed visual, #3)
from extract.models import panns  # noqa: F401  (PANNs Cnn10/Cnn14/Wavegram-Logmel-Cnn14, #3)
from extract.models import iov  # noqa: F401  (trained here: python -m extract train-iov)
