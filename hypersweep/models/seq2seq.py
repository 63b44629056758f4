"""Encoder-decoder with attention (Bahdanau et al.; Luong et al.), greedy and
beam-search decoding.

The encoder is a (bidirectional) GRU over the input: one-hot steps (steps,
vocabulary), as `reverse` and `copy` give, or token ids (steps,). The decoder is
a GRU cell fed the previous token and an attention-weighted context of the
encoder's outputs. Training uses teacher forcing (the task passes the targets:
`teacher_forcing = True`); in eval mode the model decodes on its own, as many
steps as the input has, with `decode` greedy or beam search.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hypersweep.models.errors import OutOfRange, UserError, check_at_least, check_fraction
from hypersweep.models.registry import register

AttentionKind = Literal["additive", "dot", "none"]
Decode = Literal["greedy", "beam"]


class Attention(nn.Module):
    """additive: v . tanh(W_q h + W_k e) (Bahdanau); dot: h . W e (Luong's general)."""

    def __init__(self, kind: str, hidden: int, enc_dim: int) -> None:
        super().__init__()
        self.kind = kind
        self.keys = nn.Linear(enc_dim, hidden, bias=False)
        if kind == "additive":
            self.query = nn.Linear(hidden, hidden)
            self.v = nn.Linear(hidden, 1, bias=False)

    def forward(self, h: torch.Tensor, enc: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        if self.kind == "additive":
            scores = self.v(torch.tanh(self.query(h)[:, None] + keys)).squeeze(-1)
        else:
            scores = (keys @ h[:, :, None]).squeeze(-1)
        return (F.softmax(scores, dim=1)[:, :, None] * enc).sum(1)    # the context


class Seq2Seq(nn.Module):
    teacher_forcing = True     # the task passes targets to forward() while training

    def __init__(self, input_shape: tuple[int, ...], n_outputs: int, emb: int, hidden: int,
                 bidirectional: bool, attention: str, decode: str, beam_width: int,
                 dropout: float) -> None:
        super().__init__()
        self.steps, self.vocab, self.bos = input_shape[0], n_outputs, n_outputs
        self.mode, self.beam_width = decode, beam_width
        self.src_embed = (nn.Linear(input_shape[1], emb, bias=False) if len(input_shape) == 2
                          else nn.Embedding(n_outputs, emb))
        self.encoder = nn.GRU(emb, hidden, batch_first=True, bidirectional=bidirectional)
        enc_dim = hidden * (2 if bidirectional else 1)
        self.bridge = nn.Linear(enc_dim, hidden)
        self.tgt_embed = nn.Embedding(n_outputs + 1, emb)       # + the start token
        self.attention = Attention(attention, hidden, enc_dim) if attention != "none" else None
        ctx = enc_dim if self.attention is not None else 0
        self.cell = nn.GRUCell(emb + ctx, hidden)
        self.out = nn.Linear(hidden + ctx + emb, n_outputs)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (batch, steps, vocabulary): teacher-forced on `y` when given, else
        decoded (beam: each step's logits with the beam's token lifted to the top, so
        the accuracies measure the beam's decode)."""
        enc, keys, h = self.encode(x)
        if y is None:
            return self._decode(enc, keys, h, self.mode)[1]
        prev = torch.full((len(x),), self.bos, dtype=torch.long, device=x.device)
        logits = []
        for t in range(y.shape[1]):
            step, h = self.step(prev, h, enc, keys)
            logits.append(step)
            prev = y[:, t]
        return torch.stack(logits, 1)

    @torch.no_grad()
    def decode(self, x: torch.Tensor, mode: str) -> torch.Tensor:
        """Token ids (batch, steps) decoded greedily or by beam search."""
        return self._decode(*self.encode(x), mode)[0]

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        enc, h_n = self.encoder(self.drop(self.src_embed(x)))
        final = h_n.transpose(0, 1).flatten(1)         # both directions' final states
        keys = self.attention.keys(enc) if self.attention is not None else None
        return enc, keys, torch.tanh(self.bridge(final))

    def step(self, prev: torch.Tensor, h: torch.Tensor, enc: torch.Tensor,
             keys: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        e = self.drop(self.tgt_embed(prev))
        if self.attention is None:
            h = self.cell(e, h)
            return self.out(torch.cat([self.drop(h), e], 1)), h
        ctx = self.attention(h, enc, keys)
        h = self.cell(torch.cat([e, ctx], 1), h)
        return self.out(torch.cat([self.drop(h), ctx, e], 1)), h

    def _decode(self, enc, keys, h, mode: str) -> tuple[torch.Tensor, torch.Tensor]:
        if mode == "beam" and self.beam_width > 1:
            return self._beam(enc, keys, h, self.beam_width)
        prev = torch.full((len(h),), self.bos, dtype=torch.long, device=h.device)
        tokens, logits = [], []
        for _ in range(self.steps):
            step, h = self.step(prev, h, enc, keys)
            prev = step.argmax(-1)
            tokens.append(prev)
            logits.append(step)
        return torch.stack(tokens, 1), torch.stack(logits, 1)

    def _beam(self, enc, keys, h, width: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Keep the `width` most probable prefixes of every sequence; the best at the end."""
        n, v = len(h), self.vocab
        rep = lambda t: None if t is None else t.repeat_interleave(width, 0)  # noqa: E731
        enc, keys, h = rep(enc), rep(keys), rep(h)
        scores = torch.full((n, width), float("-inf"), device=h.device)
        scores[:, 0] = 0.0                        # one live beam at the start
        prev = torch.full((n * width,), self.bos, dtype=torch.long, device=h.device)
        tokens = torch.zeros((n, width, 0), dtype=torch.long, device=h.device)
        history = torch.zeros((n, width, 0, v), device=h.device)
        for _ in range(self.steps):
            step, h = self.step(prev, h, enc, keys)
            step = step.view(n, width, v)
            cand = (scores[..., None] + F.log_softmax(step.float(), -1)).view(n, width * v)
            scores, idx = cand.topk(width, dim=1)
            beam, tok = idx // v, idx % v
            pick = lambda t: t.gather(1, beam.view(n, width, *[1] * (t.dim() - 2))  # noqa: E731
                                      .expand(-1, -1, *t.shape[2:]))
            tokens = torch.cat([pick(tokens), tok[..., None]], 2)
            history = torch.cat([pick(history), pick(step.float())[:, :, None]], 2)
            h = pick(h.view(n, width, -1)).reshape(n * width, -1)
            prev = tok.reshape(-1)
        best, logits = tokens[:, 0], history[:, 0]      # topk sorts: beam 0 is the best
        top = logits.max(-1, keepdim=True).values + 1e-3
        return best, logits.scatter(-1, best[..., None], top)


MAX_BEAM = 1000     # hypotheses a beam keeps: wider ones ran out of memory as they decoded


@register("seq2seq", task="sequence_transduction", family="seq2seq",
          variants=("attention-additive", "attention-dot", "no-attention"),
          used_when={"beam_width": ("decode", ("beam",))})
def seq2seq(*, input_shape: tuple[int, ...], n_outputs: int, emb: int = 32, hidden: int = 64,
            bidirectional: bool = True, attention: AttentionKind = "additive",
            decode: Decode = "greedy", beam_width: int = 3, dropout: float = 0.0) -> nn.Module:
    """A GRU encoder-decoder with `attention`; validation decodes with `decode`
    (beam search keeps `beam_width` hypotheses)."""
    if len(input_shape) not in (1, 2):
        raise UserError(f"model: seq2seq needs sequences (steps, vocabulary) or token ids "
                        f"(steps,); the dataset gives samples of shape {tuple(input_shape)}")
    check_at_least(1, emb=emb, hidden=hidden, beam_width=beam_width)
    if beam_width > MAX_BEAM:   # each sequence decodes as beam_width copies of it
        raise OutOfRange(f"params.beam_width: must be <= {MAX_BEAM}, got {beam_width} (beam "
                         f"search decodes each sequence as that many hypotheses at once)")
    check_fraction(dropout=dropout)
    return Seq2Seq(tuple(input_shape), n_outputs, emb, hidden, bidirectional, attention,
                   decode, beam_width, dropout)
