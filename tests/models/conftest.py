"""Tiny random-init stand-ins for the encoders, so model tests need no packaged weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from models.config import MGVMoEConfig
from models.modeling import ImageRegionEncoder, MGVMoEBatch, TextTokenEncoder

WORDS = ("the band played in paris last night with their new album at stadium red green blue "
         "photo of a car sky tree house city star won award born lives").split()


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_text_encoder(tmp_path_factory) -> TextTokenEncoder:
    """A 2-layer, 32-wide BERT and a word-level vocabulary built in the test (no downloads)."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = tmp_path_factory.mktemp("tiny-bert")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS]
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=64, max_position_embeddings=64))
    return TextTokenEncoder(model, tokenizer, max_length=32)


class TinyCNN(nn.Module):
    """Stands in for EfficientNet-Lite0: ``extract_features`` gives a (24, 4, 4) map for 32x32 input."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.conv = nn.Conv2d(3, 24, kernel_size=8, stride=8)

    def extract_features(self, x):
        return torch.relu(self.conv(x))


@pytest.fixture(scope="session")
def tiny_image_encoder() -> ImageRegionEncoder:
    return ImageRegionEncoder(TinyCNN(), image_size=32)


def random_batch(config: MGVMoEConfig, b: int = 6, length: int = 10, regions: int = 16, with_images: int = 3,
                 classes: int = 4, seed: int = 0) -> tuple[MGVMoEBatch, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(b, length, config.text_hidden, generator=g)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[0, -3:] = False
    starts = torch.randint(1, length - 4, (b, config.num_spans), generator=g)
    widths = torch.randint(1, 3, (b, config.num_spans), generator=g)  # one token (a marker) or a 2-piece span
    bounds = torch.stack([starts, starts + widths], -1)
    has = torch.zeros(b, dtype=torch.bool)
    has[:with_images] = True
    images = torch.randn(b, regions, config.image_hidden, generator=g)
    labels = torch.arange(b) % classes
    class_emb = torch.randn(classes, config.text_hidden, generator=g)
    return MGVMoEBatch(tokens, mask, bounds, images, has, labels), class_emb
