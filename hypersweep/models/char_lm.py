"""Character-level language model: embedding -> stacked LSTM/GRU -> next-character
logits at every position, with sampling at a temperature and beam search."""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hypersweep.models.errors import UserError, check_at_least, check_fraction, check_layers
from hypersweep.models.registry import register


class CharLM(nn.Module):
    def __init__(self, vocab: int, emb: int, hidden: int, layers: int, cell: str,
                 dropout: float, tie_weights: bool) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, emb)
        rnn = nn.LSTM if cell == "lstm" else nn.GRU
        self.rnn = rnn(emb, hidden, num_layers=layers, batch_first=True,
                       dropout=dropout if layers > 1 else 0.0)
        self.drop = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, emb) if tie_weights else nn.Identity()
        self.head = nn.Linear(emb if tie_weights else hidden, vocab)
        if tie_weights:     # Press and Wolf: input and output embeddings shared
            self.head.weight = self.embed.weight

    def forward(self, x: torch.Tensor, state=None, *, with_state: bool = False):
        out, state = self.rnn(self.drop(self.embed(x)), state)
        logits = self.head(self.proj(self.drop(out)))
        return (logits, state) if with_state else logits

    @torch.no_grad()
    def sample(self, prompt: torch.Tensor, length: int, temperature: float = 1.0,
               generator: torch.Generator | None = None) -> torch.Tensor:
        """`prompt` (batch, p) followed by `length` sampled ids. Temperature < 1
        sharpens the distribution towards greedy decoding; > 1 flattens it."""
        logits, state = self(prompt, with_state=True)
        out = [prompt]
        for _ in range(length):
            probs = F.softmax(logits[:, -1].float() / max(temperature, 1e-6), -1)
            nxt = torch.multinomial(probs, 1, generator=generator)
            out.append(nxt)
            logits, state = self(nxt, state, with_state=True)
        return torch.cat(out, 1)

    @torch.no_grad()
    def beam_search(self, prompt: torch.Tensor, length: int, width: int = 5) -> torch.Tensor:
        """The most probable continuation of `length` ids that beam search finds, for
        the first prompt of the batch: (1, p + length)."""
        logits, state = self(prompt[:1], with_state=True)
        scores = torch.zeros(1, device=prompt.device)
        seqs = torch.zeros((1, 0), dtype=torch.long, device=prompt.device)
        for _ in range(length):
            logp = F.log_softmax(logits[:, -1].float(), -1)              # (beams, vocab)
            cand = (scores[:, None] + logp).flatten()
            scores, idx = cand.topk(min(width, len(cand)))
            beam, tok = idx // logp.shape[1], idx % logp.shape[1]
            seqs = torch.cat([seqs[beam], tok[:, None]], 1)
            state = tuple(s[:, beam] for s in state) if isinstance(state, tuple) else state[:, beam]
            logits, state = self(tok[:, None], state, with_state=True)
        return torch.cat([prompt[:1], seqs[:1]], 1)


@register("char_lm", task="language_modelling", family="char_lm",
          variants=("lstm", "gru", "tied"))
def char_lm(*, input_shape: tuple[int, ...], n_outputs: int, cell: Literal["lstm", "gru"] = "lstm",
            emb: int = 32, hidden: int = 128, layers: int = 1, dropout: float = 0.0,
            tie_weights: bool = False) -> nn.Module:
    """A recurrent character-level language model over `n_outputs` characters;
    `tie_weights` shares the input embedding with the output layer."""
    if len(input_shape) != 1:
        raise UserError(f"model: char_lm needs windows of character ids (steps,); the "
                        f"dataset gives samples of shape {tuple(input_shape)} (use data: text)")
    check_at_least(1, emb=emb, hidden=hidden, layers=layers)
    check_layers(layers=layers)
    check_fraction(dropout=dropout)
    return CharLM(n_outputs, emb, hidden, layers, cell, dropout, tie_weights)
