"""A tiny, randomly initialised Qwen2.5-VL built locally (no download): tokenizer, processor, model, saved like a
real checkpoint so that every code path (from_pretrained, processor, chat template, generate) is the real one.

    path = build_tiny_model("runs/tiny")            # tokenizer trained on a small corpus, random weights
    model, processor = load_model_and_processor(path)
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from videoktr.errors import UserError

__all__ = [
    "TinyModelConfig",
    "QWEN2_5_VL_CHAT_TEMPLATE",
    "SPECIAL_TOKENS",
    "DEFAULT_CORPUS",
    "build_tokenizer",
    "build_processor",
    "build_tiny_model",
    "load_model_and_processor",
    "vision_token_ids",
]

# The chat template of Qwen/Qwen2.5-VL-7B-Instruct (chat_template.json), verbatim.
QWEN2_5_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}Picture {{ image_count.value }}: "
    "{% endif %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

# Qwen2.5's special tokens, in the order of the real vocabulary (151643...).
SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
VISION_SPECIAL_TOKENS = [
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Text the tokenizer is trained on when no corpus is given: the prompt template's words, answer formats, digits.
DEFAULT_CORPUS = [
    "You are a helpful assistant.",
    "Question: Which direction does the square move? Is the object on the left or on the right?",
    "Options:\nA. left\nB. right\nC. up\nD. down\nE. yes\nF. no",
    "Please think about this question as if you were a human pondering deeply. Provide your detailed reasoning "
    "between the <think> </think> tags, and then give your final answer between the <answer> </answer> tags.",
    "Please provide only the single option letter (e.g., A, B, C, D, etc.) within the <answer> </answer> tags.",
    "Please provide the numerical value (e.g., 42 or 3.14) within the <answer> </answer> tags.",
    "Please transcribe text from the image/video clearly and provide your text answer within the <answer> tags.",
    "Please provide your text answer within the <answer> </answer> tags.",
    "<think>The square starts on the left, then moves to the right, so it moves right.</think>"
    "<answer>B</answer>",
    "<think>First the red circle appears, then the blue square. The color changes from red to blue.</think>"
    "<answer>A</answer>",
    "How many objects are there? What color is the shape? Does it get bigger or smaller, faster or slower?",
    "first second third before after then finally moves appears disappears top bottom red green blue yellow",
    "0 1 2 3 4 5 6 7 8 9 10 11 12 20 42 3.14 100 frame frames video image",
]


@dataclass
class TinyModelConfig:
    """Sizes of the tiny Qwen2.5-VL. Defaults run a training step on a laptop CPU in seconds."""

    hidden_size: int = field(
        default=128, metadata={"help": "text model hidden size (= vision out_hidden_size)"}
    )
    num_hidden_layers: int = field(default=2, metadata={"help": "text decoder layers"})
    num_attention_heads: int = field(
        default=4, metadata={"help": "text attention heads (head_dim = hidden/heads)"}
    )
    num_key_value_heads: int = field(
        default=2, metadata={"help": "text key/value heads (GQA); divides heads"}
    )
    intermediate_size: int = field(default=256, metadata={"help": "text MLP width"})
    rope_theta: float = field(
        default=100.0,
        metadata={
            "help": "text RoPE base; small, because with Qwen's 1e6 a tiny model cannot tell positions apart"
        },
    )
    mrope_section: tuple[int, int, int] = field(
        default=(2, 2, 12),
        metadata={"help": "M-RoPE (temporal, height, width) frequency split; must sum to head_dim / 2"},
    )
    max_position_embeddings: int = field(default=4096, metadata={"help": "text context length"})
    vision_hidden_size: int = field(default=64, metadata={"help": "vision tower hidden size"})
    vision_depth: int = field(default=1, metadata={"help": "vision tower blocks"})
    vision_num_heads: int = field(
        default=2, metadata={"help": "vision attention heads; divides vision hidden"}
    )
    vision_intermediate_size: int = field(default=128, metadata={"help": "vision MLP width"})
    patch_size: int = field(default=14, metadata={"help": "vision patch side in pixels (Qwen2.5-VL: 14)"})
    temporal_patch_size: int = field(
        default=2, metadata={"help": "frames per temporal patch (Qwen2.5-VL: 2)"}
    )
    spatial_merge_size: int = field(
        default=2, metadata={"help": "patches merged per side into one LLM token"}
    )
    window_size: int = field(default=112, metadata={"help": "vision window attention size in pixels"})
    tokens_per_second: int = field(
        default=2, metadata={"help": "temporal M-RoPE ids per second of video (Qwen2.5-VL-7B: 2)"}
    )
    min_pixels: int = field(
        default=56 * 56, metadata={"help": "processor min pixels per frame (multiple of 28^2)"}
    )
    max_pixels: int = field(default=112 * 112, metadata={"help": "processor max pixels per frame"})
    vocab_size: int = field(
        default=1024, metadata={"help": "target BPE vocabulary size (incl. special tokens)"}
    )
    tie_word_embeddings: bool = field(default=True, metadata={"help": "share input embeddings and LM head"})
    seed: int = field(default=0, metadata={"help": "seed of the random initialisation"})

    def __post_init__(self) -> None:
        self.mrope_section = tuple(self.mrope_section)
        self.validate()

    def validate(self) -> None:
        """Raise :class:`UserError` naming the field and the fix."""
        if self.hidden_size % self.num_attention_heads:
            raise UserError(f"hidden_size {self.hidden_size} must be divisible by num_attention_heads")
        if self.num_attention_heads % self.num_key_value_heads:
            raise UserError("num_attention_heads must be a multiple of num_key_value_heads")
        head_dim = self.hidden_size // self.num_attention_heads
        if len(self.mrope_section) != 3 or sum(self.mrope_section) != head_dim // 2:
            raise UserError(
                f"mrope_section {self.mrope_section} must have 3 entries summing to head_dim/2 = {head_dim // 2}"
            )
        if self.vision_hidden_size % self.vision_num_heads:
            raise UserError("vision_hidden_size must be divisible by vision_num_heads")
        factor = self.patch_size * self.spatial_merge_size
        if self.min_pixels < factor**2 or self.max_pixels < self.min_pixels:
            raise UserError(
                f"need {factor}^2 <= min_pixels <= max_pixels, got {self.min_pixels}, {self.max_pixels}"
            )
        if self.vocab_size < 256 + len(SPECIAL_TOKENS):
            raise UserError(f"vocab_size must be >= {256 + len(SPECIAL_TOKENS)} (bytes + special tokens)")


def build_tokenizer(corpus: list[str] | None = None, vocab_size: int = 1024):
    """Byte-level BPE trained locally on ``corpus`` with Qwen2.5-VL's special tokens and chat template.

    Returns a ``PreTrainedTokenizerFast`` with pad = ``<|endoftext|>`` (as Qwen), eos = ``<|im_end|>``, left padding.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = list(DEFAULT_CORPUS if corpus is None else corpus)
    if not texts:
        raise UserError("the tokenizer corpus is empty; pass some text (or no corpus for the built-in one)")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS[1:],
        padding_side="left",
        model_max_length=32768,
    )
    tokenizer.chat_template = QWEN2_5_VL_CHAT_TEMPLATE
    return tokenizer


def build_processor(tokenizer, config: TinyModelConfig, arch: str = "qwen2_5_vl"):
    """The family's real processor (real image and video processors) sized for ``config``: ``Qwen2_5_VLProcessor``
    / ``Qwen2VLProcessor``, or ``Qwen3VLProcessor`` (Qwen3-VL and Qwen3.5, per-patch timestamps in the text)."""
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    common = dict(
        min_pixels=config.min_pixels,
        max_pixels=config.max_pixels,
        patch_size=config.patch_size,
        temporal_patch_size=config.temporal_patch_size,
        merge_size=config.spatial_merge_size,
    )
    image_processor = Qwen2VLImageProcessor(**common)
    if arch in ("qwen3_vl", "qwen3_5"):
        from transformers import Qwen3VLProcessor, Qwen3VLVideoProcessor

        # this processor bounds the pixels of the whole clip: per-frame bounds for clips of 2 to 64 frames
        size = {"shortest_edge": config.min_pixels * 2, "longest_edge": config.max_pixels * 64}
        video_processor = Qwen3VLVideoProcessor(
            size=size,
            patch_size=config.patch_size,
            temporal_patch_size=config.temporal_patch_size,
            merge_size=config.spatial_merge_size,
            do_sample_frames=False,
            cap_pixels_per_frame=False,
        )
        return Qwen3VLProcessor(
            image_processor=image_processor,
            tokenizer=tokenizer,
            video_processor=video_processor,
            chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
        )
    # frames arrive already sampled: never resample them, and keep the per-frame budget exactly min/max pixels
    video_processor = Qwen2VLVideoProcessor(**common, do_sample_frames=False, cap_pixels_per_frame=False)
    processor_class = Qwen2VLProcessor if arch == "qwen2_vl" else Qwen2_5_VLProcessor
    return processor_class(
        image_processor=image_processor,
        tokenizer=tokenizer,
        video_processor=video_processor,
        chat_template=QWEN2_5_VL_CHAT_TEMPLATE,
    )


def vision_token_ids(processor) -> list[int]:
    """Ids of the vision special tokens (start/end/pad, image pad, video pad), read from the tokenizer.

    A model must never emit them: the tiny model's generation config suppresses them.
    """
    tokenizer = getattr(processor, "tokenizer", processor)
    ids = []
    for token in VISION_SPECIAL_TOKENS:
        token_id = tokenizer.convert_tokens_to_ids(token)
        if token_id is None or token_id == tokenizer.unk_token_id:
            raise UserError(f"the tokenizer has no {token} token; is this a Qwen2.5-VL processor?")
        ids.append(int(token_id))
    return ids


def _model_config(tokenizer, config: TinyModelConfig, arch: str = "qwen2_5_vl"):
    """The family's transformers config at the tiny sizes (token ids read from the tokenizer)."""
    import transformers

    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    head_dim = config.hidden_size // config.num_attention_heads
    text_config = dict(
        vocab_size=len(tokenizer),
        hidden_size=config.hidden_size,
        intermediate_size=config.intermediate_size,
        num_hidden_layers=config.num_hidden_layers,
        num_attention_heads=config.num_attention_heads,
        num_key_value_heads=config.num_key_value_heads,
        max_position_embeddings=config.max_position_embeddings,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": config.rope_theta,
            "mrope_section": list(config.mrope_section),
        },
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=tokenizer.pad_token_id,
    )
    vision_config = dict(
        depth=config.vision_depth,
        hidden_size=config.vision_hidden_size,
        intermediate_size=config.vision_intermediate_size,
        num_heads=config.vision_num_heads,
        patch_size=config.patch_size,
        temporal_patch_size=config.temporal_patch_size,
        spatial_merge_size=config.spatial_merge_size,
        out_hidden_size=config.hidden_size,
    )
    if arch in ("qwen2_5_vl", "qwen2_vl"):
        text_config["max_window_layers"] = config.num_hidden_layers
    if arch == "qwen2_5_vl":
        vision_config.update(
            window_size=config.window_size,
            tokens_per_second=config.tokens_per_second,
            fullatt_block_indexes=[config.vision_depth - 1],
        )
    elif arch == "qwen2_vl":
        vision_config = dict(
            depth=config.vision_depth,
            embed_dim=config.vision_hidden_size,
            hidden_size=config.hidden_size,
            mlp_ratio=max(1, config.vision_intermediate_size // config.vision_hidden_size),
            num_heads=config.vision_num_heads,
            patch_size=config.patch_size,
            temporal_patch_size=config.temporal_patch_size,
            spatial_merge_size=config.spatial_merge_size,
        )
    else:  # Qwen3-VL / Qwen3.5: learned patch position table, explicit head_dim, interleaved M-RoPE
        grid = (config.max_pixels**0.5) // config.patch_size + 1
        vision_config["num_position_embeddings"] = int(grid * grid)
        text_config["head_dim"] = head_dim
        if arch == "qwen3_vl":
            vision_config["deepstack_visual_indexes"] = list(range(config.vision_depth - 1))
            text_config["rope_parameters"]["mrope_interleaved"] = True
        else:  # Qwen3.5: a Gated DeltaNet layer then an attention layer; rotary on a quarter of head_dim
            text_config.update(
                layer_types=["linear_attention", "full_attention"] * (config.num_hidden_layers // 2)
                + ["full_attention"] * (config.num_hidden_layers % 2),
                linear_key_head_dim=head_dim,
                linear_value_head_dim=head_dim,
                linear_num_key_heads=config.num_key_value_heads,
                linear_num_value_heads=config.num_attention_heads,
            )
            rotary = head_dim // 4
            text_config["rope_parameters"].update(
                partial_rotary_factor=0.25,
                mrope_section=[rotary // 2 - 2 * (rotary // 6), rotary // 6, rotary // 6],
                mrope_interleaved=True,
            )
    config_class = {
        "qwen2_5_vl": "Qwen2_5_VLConfig",
        "qwen2_vl": "Qwen2VLConfig",
        "qwen3_vl": "Qwen3VLConfig",
        "qwen3_5": "Qwen3_5Config",
    }[arch]
    return getattr(transformers, config_class)(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=config.tie_word_embeddings,
    )


def _generation_config(tokenizer, processor):
    from transformers import GenerationConfig

    return GenerationConfig(
        eos_token_id=[
            tokenizer.convert_tokens_to_ids("<|im_end|>"),
            tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        ],
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        suppress_tokens=vision_token_ids(processor),
    )


def build_tiny_model(
    out_dir: str | Path,
    corpus: list[str] | None = None,
    config: TinyModelConfig | None = None,
    arch: str = "qwen2_5_vl",
) -> Path:
    """Build tokenizer, the family's processor and a randomly initialised model of family ``arch`` (qwen2_5_vl,
    qwen2_vl, qwen3_vl, qwen3_5; see :mod:`videoktr.models.families`) and save them with ``save_pretrained`` in
    ``out_dir`` (plus ``tiny_model_config.json`` recording ``config``). Returns the path. The family's
    ``tiny_overrides`` (e.g. Qwen3's 16-pixel patches) apply where ``config`` is not given.
    """
    from transformers import AutoModelForImageTextToText

    from videoktr.models.families import FAMILIES

    family = FAMILIES.get(arch)
    config = config or TinyModelConfig(**family.tiny_overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(corpus, vocab_size=config.vocab_size)
    processor = build_processor(tokenizer, config, arch)
    torch.manual_seed(config.seed)
    model = AutoModelForImageTextToText.from_config(_model_config(tokenizer, config, arch))
    model.generation_config = _generation_config(tokenizer, processor)
    model.save_pretrained(out)
    processor.save_pretrained(out)
    (out / "tiny_model_config.json").write_text(json.dumps({"arch": arch, **asdict(config)}, indent=2) + "\n")
    return out


def load_model_and_processor(path: str | Path, dtype: torch.dtype = torch.float32, device: str = "cpu"):
    """Load a local checkpoint directory of a supported family (tiny or real) with the Auto classes. Returns (model, processor).

    Raises :class:`UserError` when ``path`` has no ``config.json`` (never falls back to the hub).
    """
    from transformers import AutoModelForImageTextToText, AutoProcessor

    path = Path(path)
    if not (path / "config.json").is_file():
        raise UserError(
            f"{path} is not a model directory (no config.json); build one with "
            f"`videoktr build-tiny-model --out {path}` or point to a downloaded Qwen2.5-VL checkpoint"
        )
    from transformers import AutoConfig

    from videoktr.models.families import check_video_processor, family_of

    family_of(AutoConfig.from_pretrained(path))  # refuses an unsupported family before loading weights
    processor = AutoProcessor.from_pretrained(path)
    check_video_processor(processor, str(path))
    model = AutoModelForImageTextToText.from_pretrained(path, dtype=dtype).to(device)
    return model, processor
