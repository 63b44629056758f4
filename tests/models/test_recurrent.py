"""Recurrent nets, seq2seq and the character-level language model."""
from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F

from hypersweep.models.char_lm import char_lm
from hypersweep.models.errors import UserError
from hypersweep.models.registry import get_builder
from hypersweep.models.rnn import rnn
from hypersweep.models.seq2seq import seq2seq
from tests.models.test_builders import check_forward_and_step


@pytest.mark.parametrize("cell,bidirectional,layers",
                         itertools.product(["rnn", "lstm", "gru"], [False, True], [1, 2]))
def test_rnn_cells_stacked_and_bidirectional(cell, bidirectional, layers):
    check_forward_and_step("rnn", (8, 8), 10, "label", "classification", cell=cell,
                           bidirectional=bidirectional, layers=layers, dropout=0.2)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_many_to_many_gives_one_output_per_step(name):
    check_forward_and_step(name, (12, 10), 10, "tokens", "sequence_transduction",
                           head="many_to_many", bidirectional=True)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
def test_many_to_one_regression(name):
    check_forward_and_step(name, (20, 2), 1, "value", "regression")


def test_lstm_and_gru_are_rnn_with_the_cell_fixed():
    assert "cell" not in get_builder("lstm").hyperparameters()
    assert isinstance(get_builder("lstm").build(input_shape=(8, 8), n_outputs=3).rnn, torch.nn.LSTM)
    assert isinstance(get_builder("gru").build(input_shape=(8, 8), n_outputs=3).rnn, torch.nn.GRU)
    assert get_builder("rnn").build(input_shape=(8, 8), n_outputs=3,
                                    nonlinearity="relu").rnn.nonlinearity == "relu"


def test_images_are_read_row_by_row():
    torch.manual_seed(0)
    model = rnn(input_shape=(1, 8, 8), n_outputs=10).eval()
    x = torch.rand(3, 1, 8, 8)
    assert torch.allclose(model(x), model(x[:, 0]))     # (1, 8, 8) image == 8 rows of 8


def test_bidirectional_many_to_one_reads_the_whole_sequence_both_ways():
    torch.manual_seed(0)
    model = rnn(input_shape=(5, 3), n_outputs=2, bidirectional=True).eval()
    x = torch.rand(1, 5, 3)
    changed_first, changed_last = x.clone(), x.clone()
    changed_first[0, 0] += 1.0
    changed_last[0, -1] += 1.0
    assert not torch.allclose(model(x), model(changed_first))
    assert not torch.allclose(model(x), model(changed_last))


@pytest.mark.parametrize("kwargs,key", [({"hidden": 0}, "hidden"), ({"layers": 0}, "layers"),
                                        ({"dropout": 1.0}, "dropout")])
def test_bad_rnn_arguments_are_user_errors(kwargs, key):
    with pytest.raises(UserError, match=f"^params.{key}:"):
        rnn(input_shape=(8, 8), n_outputs=10, **kwargs)


def test_rnn_on_token_ids_is_a_user_error():
    with pytest.raises(UserError, match=r"^model: rnn needs sequences"):
        rnn(input_shape=(64,), n_outputs=10)


# ---------------------------------------------------------------- seq2seq

@pytest.mark.parametrize("attention,decode", itertools.product(["additive", "dot", "none"],
                                                               ["greedy", "beam"]))
def test_seq2seq_attention_and_decoding(attention, decode):
    check_forward_and_step("seq2seq", (6, 5), 5, "tokens", "sequence_transduction",
                           attention=attention, decode=decode, bidirectional=attention != "dot")


def test_seq2seq_on_token_ids():
    check_forward_and_step("seq2seq", (7,), 9, "tokens", "language_modelling")


def _reverse_batch(n=32, length=5, vocab=6):
    ids = torch.randint(0, vocab, (n, length), generator=torch.Generator().manual_seed(1))
    return F.one_hot(ids, vocab).float(), ids.flip(1)


def test_teacher_forcing_feeds_the_targets_and_eval_decodes_alone():
    torch.manual_seed(0)
    model = seq2seq(input_shape=(5, 6), n_outputs=6)
    x, y = _reverse_batch()
    model.eval()
    forced = model(x, y)
    free = model(x)
    assert forced.shape == free.shape == (32, 5, 6)
    # Step 1 sees only the start token in both; later steps differ with the input tokens.
    assert torch.allclose(forced[:, 0], free[:, 0], atol=1e-6)
    greedy = model.decode(x, "greedy")
    assert torch.equal(greedy, free.argmax(-1))


def _sequence_logprob(model, x, tokens):
    with torch.no_grad():
        return F.log_softmax(model(x, tokens), -1).gather(-1, tokens[..., None]).sum((1, 2))


def test_beam_search_finds_sequences_at_least_as_probable_as_greedy():
    torch.manual_seed(0)
    model = seq2seq(input_shape=(5, 6), n_outputs=6, beam_width=4).eval()
    x, _ = _reverse_batch()
    greedy, beam = model.decode(x, "greedy"), model.decode(x, "beam")
    lp_greedy, lp_beam = _sequence_logprob(model, x, greedy), _sequence_logprob(model, x, beam)
    assert (lp_beam >= lp_greedy - 1e-4).all()
    assert (lp_beam > lp_greedy + 1e-4).any()      # an untrained model: greedy is not optimal
    # The eval output of decode=beam has the beam's tokens on top, for the accuracies.
    model.mode = "beam"
    assert torch.equal(model(x).argmax(-1), beam)


def test_beam_width_one_is_greedy():
    torch.manual_seed(0)
    model = seq2seq(input_shape=(5, 6), n_outputs=6, beam_width=1).eval()
    x, _ = _reverse_batch()
    assert torch.equal(model.decode(x, "beam"), model.decode(x, "greedy"))


def test_seq2seq_bad_arguments():
    with pytest.raises(UserError, match="^params.beam_width:"):
        seq2seq(input_shape=(5, 6), n_outputs=6, beam_width=0)
    # A billion hypotheses ran out of memory as validation decoded, blamed on training
    with pytest.raises(UserError, match=r"^params.beam_width: must be <= 1000, got 1000000000 "
                                        r"\(beam search decodes each sequence as that many"):
        seq2seq(input_shape=(5, 6), n_outputs=6, beam_width=10**9)
    assert seq2seq(input_shape=(5, 6), n_outputs=6, beam_width=1000).beam_width == 1000
    with pytest.raises(UserError, match="^model: seq2seq needs sequences"):
        seq2seq(input_shape=(1, 8, 8), n_outputs=6)


# ---------------------------------------------------------------- char_lm

@pytest.mark.parametrize("cell,layers,tie", [("lstm", 1, False), ("gru", 2, True)])
def test_char_lm_variants(cell, layers, tie):
    check_forward_and_step("char_lm", (12,), 7, "tokens", "language_modelling", cell=cell,
                           layers=layers, tie_weights=tie, emb=8, hidden=16, dropout=0.1)


def test_sampling_is_reproducible_and_cold_sampling_is_greedy():
    torch.manual_seed(0)
    model = char_lm(input_shape=(12,), n_outputs=7, hidden=16).eval()
    prompt = torch.tensor([[1, 2, 3]])

    def sample(t: float, seed: int) -> torch.Tensor:
        return model.sample(prompt, 20, t, torch.Generator().manual_seed(seed))

    assert sample(1.0, 0).shape == (1, 23) and torch.equal(sample(1.0, 0)[:, :3], prompt)
    assert torch.equal(sample(1.0, 0), sample(1.0, 0))
    assert not torch.equal(sample(5.0, 0), sample(5.0, 1))
    # At a near-zero temperature each step takes the most probable character.
    cold = sample(1e-4, 0)
    with torch.no_grad():
        logits = model(cold[:, :-1])
    assert torch.equal(logits[0, 2:].argmax(-1), cold[0, 3:])


def test_char_lm_beam_search_beats_greedy_or_ties():
    torch.manual_seed(0)
    model = char_lm(input_shape=(12,), n_outputs=7, hidden=16).eval()
    prompt = torch.tensor([[1, 2, 3]])

    def logprob(seq):
        with torch.no_grad():
            lp = F.log_softmax(model(seq[:, :-1]), -1).gather(-1, seq[:, 1:, None])
        return lp[0, 2:].sum().item()     # the continuation only

    beam = model.beam_search(prompt, 10, width=5)
    greedy = model.sample(prompt, 10, 1e-6, torch.Generator().manual_seed(0))
    assert beam.shape == (1, 13)
    assert logprob(beam) >= logprob(greedy) - 1e-4


def test_char_lm_needs_token_windows():
    with pytest.raises(UserError, match=r"^model: char_lm needs windows .*use data: text"):
        char_lm(input_shape=(1, 8, 8), n_outputs=10)
