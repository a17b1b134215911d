"""A tiny text classifier over token ids and its training loop (token ids are not float inputs,
so ``train`` does not apply)."""
from __future__ import annotations

import torch
from torch import nn

from .._validate import check_int, check_labels, check_real

__all__ = ["TextClassifier", "train_text_classifier"]


class TextClassifier(nn.Module):
    """A tiny text classifier over token ids (N, L): embedding → ``body``.

    ``body`` (an ``nn.Sequential`` taking embeddings channels-first, (N, dim, L) → logits): conv1d
    over positions (kernel 3) → ReLU → max over positions → linear. Attribution methods explain
    ``body`` on ``embed(tokens)`` (float inputs), then reduce over the embedding axis (dim 1) per token.
    """

    def __init__(self, vocab_size: int, n_classes: int = 2, dim: int = 16, channels: int = 32):
        super().__init__()
        self.config = dict(vocab_size=vocab_size, n_classes=n_classes, dim=dim, channels=channels)
        self.embedding = nn.Embedding(vocab_size, dim)
        self.body = nn.Sequential(nn.Conv1d(dim, channels, 3, padding=1), nn.ReLU(),
                                  nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(channels, n_classes))

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids (N, L) → embeddings, channels first: (N, dim, L)."""
        return self.embedding(tokens).transpose(1, 2)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.body(self.embed(tokens))


def train_text_classifier(tokens: torch.Tensor, labels: torch.Tensor, vocab_size: int, *, epochs: int = 15,
                          lr: float = 1e-2, batch_size: int = 64, seed: int = 0, **model_options) -> "TextClassifier":
    """A ``TextClassifier`` trained with Adam and cross-entropy on token ids (N, L) (``train`` takes
    float inputs only), deterministically under ``seed`` (local RNG), on the CPU; returned in eval mode."""
    tokens = torch.as_tensor(tokens)
    if tokens.dtype != torch.int64 or tokens.dim() != 2:
        raise TypeError(f"tokens must be an int64 tensor (N, L) of token ids, got {tokens.dtype} {tuple(tokens.shape)}")
    vocab_size = check_int("vocab_size", vocab_size, min=1)
    if int(tokens.min()) < 0 or int(tokens.max()) >= vocab_size:
        raise ValueError(f"tokens must lie in [0, vocab_size={vocab_size})")
    epochs, batch_size = check_int("epochs", epochs, min=1), check_int("batch_size", batch_size, min=1)
    lr = check_real("lr", lr, min=0.0, min_inclusive=False)
    y = check_labels("labels", labels, len(tokens), model_options.get("n_classes", 2))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(check_int("seed", seed))
        model = TextClassifier(vocab_size, **model_options)
        opt = torch.optim.Adam(model.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed)
        model.train()
        for _ in range(epochs):
            perm = torch.randperm(len(tokens), generator=g)
            for i in range(0, len(tokens), batch_size):
                idx = perm[i:i + batch_size]
                opt.zero_grad()
                nn.functional.cross_entropy(model(tokens[idx]), y[idx]).backward()
                opt.step()
    for p in model.parameters():
        p.grad = None
    return model.eval()
