"""Importing this package registers every extractor (architectures only; nothing is built or loaded)."""
from extract.models import debug, efficientat, mobilenet, openl3  # noqa: F401  (registration on import)
from extract.models import open_clip_vit, places365, torchvision_vit  # noqa: F401  (seed visual, #3)
from extract.models import panns  # noqa: F401  (PANNs Cnn10/Cnn14/Wavegram-Logmel-Cnn14, #3)
from extract.models import iov  # noqa: F401  (trained here: python -m extract train-iov)
from extract.registry import register_alias

# The first paper's six (docs/extractors.md): ViT-H/14 logits as its code used them; PANNs Cnn10
# because the paper's code expects 512-d PANNs features (Cnn14 and Wavegram-Logmel-Cnn14 give 2048-d).
register_alias("seed", (
    "vit_h14.swag_e2e_in1k_logits", "clip_vit_h14.laion2b_s32b_b79k", "resnet50.places365",
    "openl3_mel256_music_512", "panns_cnn10.audioset", "iov_cnn420",
))
from extract.models import fcnn  # noqa: F401  (second paper's audio model, trained here: train-extractor fcnn.tau)
