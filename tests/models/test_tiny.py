import json

import pytest
import torch
from transformers import LogitsProcessor, LogitsProcessorList

from videoktr.cli import main
from videoktr.errors import UserError
from videoktr.models.qwen2_5_vl import build_video_inputs
from videoktr.models.tiny import (
    TinyModelConfig,
    build_tiny_model,
    build_tokenizer,
    load_model_and_processor,
    vision_token_ids,
)


def test_config_validation_names_the_field():
    with pytest.raises(UserError, match="mrope_section"):
        TinyModelConfig(mrope_section=(2, 2, 2))
    with pytest.raises(UserError, match="num_attention_heads"):
        TinyModelConfig(hidden_size=130)


def test_tokenizer_has_qwen_special_tokens_and_chat_template():
    tok = build_tokenizer(["hello world, the square moves left"], vocab_size=300)
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>" and tok.padding_side == "left"
    for token in ("<|im_start|>", "<|vision_start|>", "<|video_pad|>", "<|image_pad|>"):
        ids = tok(token, add_special_tokens=False).input_ids
        assert len(ids) == 1 and ids[0] == tok.convert_tokens_to_ids(token)  # one unsplit token
    text = "the square moves left"
    assert tok.decode(tok(text).input_ids) == text  # byte-level BPE round trip


def test_chat_template_is_qwen2_5_vl(tiny):
    _, processor = tiny
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Which way?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|video_pad|><|vision_end|>Which way?<|im_end|>\n<|im_start|>assistant\n"
    )


def test_vision_token_ids_match_the_model_config(tiny):
    model, processor = tiny
    ids = vision_token_ids(processor)
    cfg = model.config
    assert {cfg.video_token_id, cfg.image_token_id, cfg.vision_start_token_id, cfg.vision_end_token_id} < set(
        ids
    )
    assert len(set(ids)) == 5
    assert sorted(model.generation_config.suppress_tokens) == sorted(ids)


def test_saved_config_records_the_tiny_settings(tiny_dir, tiny):
    model, processor = tiny
    text = model.config.text_config
    assert text.rope_parameters["rope_theta"] == 100.0
    assert list(text.rope_parameters["mrope_section"]) == [2, 2, 12]
    assert text.vocab_size == len(processor.tokenizer)
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.language_model.embed_tokens.weight.data_ptr()
    assert json.loads((tiny_dir / "tiny_model_config.json").read_text())["hidden_size"] == 128


def test_reload_gives_identical_logits(tiny_dir, tiny, video):
    model, processor = tiny
    reloaded, processor2 = load_model_and_processor(tiny_dir)
    inputs = build_video_inputs(processor, ["Which way?"], [video(0)])
    inputs2 = build_video_inputs(processor2, ["Which way?"], [video(0)])
    assert torch.equal(inputs["input_ids"], inputs2["input_ids"])
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, reloaded.eval()(**inputs2).logits)


def test_same_seed_same_weights_other_seed_different(tmp_path):
    small = dict(
        hidden_size=32,
        intermediate_size=64,
        num_attention_heads=2,
        num_key_value_heads=1,
        mrope_section=(2, 2, 4),
        vision_hidden_size=32,
        vision_intermediate_size=32,
    )
    paths = [
        build_tiny_model(tmp_path / name, config=TinyModelConfig(seed=seed, **small))
        for name, seed in (("a", 1), ("b", 1), ("c", 2))
    ]
    weights = [load_model_and_processor(p)[0].lm_head.weight for p in paths]
    assert torch.equal(weights[0], weights[1]) and not torch.equal(weights[0], weights[2])


def test_load_without_config_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="build-tiny-model"):
        load_model_and_processor(tmp_path)


class BoostTokens(LogitsProcessor):
    """Makes the given tokens overwhelmingly likely (so that a missing suppression would show)."""

    def __init__(self, ids):
        self.ids = ids

    def __call__(self, input_ids, scores):
        scores[:, self.ids] += 1e4
        return scores


def test_generation_never_emits_vision_tokens(tiny, video):
    model, processor = tiny
    ids = vision_token_ids(processor)
    inputs = build_video_inputs(processor, ["Which way?", "Color?"], [video(0), video(1)])
    boost = LogitsProcessorList([BoostTokens(ids)])
    torch.manual_seed(0)
    out = model.generate(**inputs, max_new_tokens=12, do_sample=True, logits_processor=boost)
    new = out[:, inputs["input_ids"].shape[1] :]
    assert new.shape[1] > 0 and not torch.isin(new, torch.tensor(ids)).any()
    # control: without the generation config's suppression the boosted vision ids do come out
    out = model.generate(
        **inputs, max_new_tokens=3, do_sample=True, logits_processor=boost, suppress_tokens=[]
    )
    assert torch.isin(out[:, inputs["input_ids"].shape[1] :], torch.tensor(ids)).all()


def test_build_tiny_model_command(tmp_path):
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps([{"problem": "Where does the ball go?", "solution": "<answer>A</answer>"}]))
    out = tmp_path / "model"
    assert main(["build-tiny-model", "--out", str(out), "--corpus", str(corpus)]) == 0
    model, processor = load_model_and_processor(out)
    assert processor.tokenizer.convert_tokens_to_ids("<|video_pad|>") == model.config.video_token_id


def test_build_tiny_model_command_rejects_bad_corpus(tmp_path, capsys):
    corpus = tmp_path / "corpus.json"
    corpus.write_text(json.dumps({"not": "a list"}))
    assert main(["build-tiny-model", "--out", str(tmp_path / "m"), "--corpus", str(corpus)]) == 2
    assert "corpus.json" in capsys.readouterr().err
