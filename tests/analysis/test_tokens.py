"""Token records: offsets, union, length checks; pieces_from_ids on a byte-level BPE tokenizer."""

import pytest
import torch

from videoktr.analysis.tokens import pieces_from_ids, record_signals, records_from_batch, token_records


def test_offsets_are_cumulative_piece_lengths():
    pieces = ["<think>", "The", " red", " ball", "\n"]
    masks = {"visual": [False, False, True, False, False], "temporal": [False, True, False, False, False]}
    recs = token_records(pieces, masks, {"visual": [0.0, 0.1, 0.9, 0.2, 0.0]})
    # lengths 7, 3, 4, 5, 1 -> starts 0, 7, 10, 14, 19; ends 7, 10, 14, 19, 20
    assert [(r.start, r.end) for r in recs] == [(0, 7), (7, 10), (10, 14), (14, 19), (19, 20)]
    text = "".join(pieces)
    assert all(text[r.start : r.end] == r.text for r in recs)
    assert [r.union for r in recs] == [False, True, True, False, False]  # OR of the two masks
    assert recs[2].signals == ["visual"] and recs[2].scores == {"visual": 0.9}
    assert recs[0].scores == {"visual": 0.0}


def test_explicit_union_overrides_or_and_tensors_accepted():
    masks = {"visual": torch.tensor([True, True]), "temporal": torch.tensor([True, False])}
    recs = token_records(["a", "b"], masks, union=torch.tensor([True, False]))  # intersection mask
    assert [r.union for r in recs] == [True, False]
    assert recs[1].selected == {"visual": True, "temporal": False}


def test_length_mismatch_names_the_signal():
    with pytest.raises(ValueError, match="mask 'temporal' has 1 entries but there are 2 pieces"):
        token_records(["a", "b"], {"visual": [True, False], "temporal": [True]})
    with pytest.raises(ValueError, match="scores 'entropy'"):
        token_records(["a", "b"], {"visual": [True, False]}, {"entropy": [1.0, 2.0, 3.0]})


def test_record_signals_must_agree():
    a = token_records(["x"], {"visual": [True]})
    b = token_records(["y"], {"temporal": [True]})
    assert record_signals([a, a]) == ["visual"]
    with pytest.raises(ValueError, match="same masks"):
        record_signals([a, b])


@pytest.fixture(scope="module")
def bpe_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<think>", "</think>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["the red ball moves left then right"] * 5, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


def test_pieces_join_to_decoded_text_with_split_multibyte_chars(bpe_tokenizer):
    text = "<think>the café ball 😀 moves</think>"
    ids = bpe_tokenizer.encode(text)
    singles = [bpe_tokenizer.decode([i]) for i in ids]
    assert any("\ufffd" in s for s in singles)  # the case that decoding ids one by one gets wrong
    pieces = pieces_from_ids(bpe_tokenizer, ids)
    assert len(pieces) == len(ids)
    assert "".join(pieces) == text
    assert "\ufffd" not in "".join(pieces)
    assert pieces[0] == "<think>" and pieces[-1] == "</think>"
    assert "😀" in pieces  # the emoji's 4 bytes are attributed to the token that completes it
    assert "é" in pieces  # the 2-byte "é" is split over two byte-level tokens


def test_records_from_batch_keeps_valid_tokens(bpe_tokenizer):
    ids = bpe_tokenizer.encode("the red ball")
    pad = 0
    row0 = ids + [pad, pad]
    row1 = ids[:2] + [pad] * (len(ids))
    batch = torch.tensor([row0, row1])
    valid = torch.tensor([[1] * len(ids) + [0, 0], [1, 1] + [0] * len(ids)])
    vis = torch.zeros_like(batch, dtype=torch.bool)
    vis[0, 1] = True
    out = records_from_batch(bpe_tokenizer, batch, valid, {"visual": vis}, {"visual": batch.float()})
    assert [len(r) for r in out] == [len(ids), 2]
    assert "".join(r.text for r in out[0]) == "the red ball"
    assert out[0][1].selected["visual"] and not out[1][1].selected["visual"]
    assert out[1][1].scores["visual"] == float(ids[1])
