"""Build a tiny random-weight Qwen2.5-VL checkpoint on disk, fully offline.

Why: the backends must be tested on a real architecture, a real tokenizer and a real
processor (chat template, image tokens, mrope) without a model hub. The weights are
random, so tests assert on shapes, token counts, finish reasons, label-set membership
and JSON validity, never on what the text says.

The checkpoint (~0.4M parameters, ~2 MB) loads in transformers (``AutoProcessor`` +
``AutoModelForImageTextToText``) and in vLLM (head size 32: vLLM's CPU attention needs
at least 32; ``mrope_section`` sums to head_dim / 2).
"""

from __future__ import annotations

import json
from pathlib import Path

# The Qwen2.5-VL chat template (as shipped with the Qwen2.5-VL checkpoints).
QWEN_VL_CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "{% if add_vision_id %}Picture {{ image_count.value }}: {% endif %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "{% if add_vision_id %}Video {{ video_count.value }}: {% endif %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

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

# A small corpus so the BPE learns merges for the words sovtp prompts actually use.
_CORPUS = [
    "You are an expert in facial expression analysis. Look at the numbered faces in the frames.",
    "The target person is face 1. Other people: face 2, face 3. Answer with one label.",
    "Action units: AU1 inner brow raiser, AU2 outer brow raiser, AU4 brow lowerer, AU6 cheek raiser,",
    "AU12 lip corner puller, AU15 lip corner depressor, AU25 lips part, AU26 jaw drop.",
    "Body pose: head tilted left, shoulders raised, arms crossed. Scene: two people, low motion.",
    '{"observation": "smile", "action_units": "AU6 AU12", "context": "party", "reasoning": "joy", "label": "happy"}',
    "labels: happy, sad, neutral, angry, surprise, disgust, fear, contempt, anxiety, helplessness, disappointment",
    "Final answer: happy. Label: sad. The emotion is neutral. The person looks angry, surprised, disgusted, afraid.",
    "0123456789 { } [ ] : , . ; ' \" ( ) - _ / \\ ? ! true false null",
    "system user assistant Picture Video frame image of the scene and the face",
]


def _train_tokenizer(vocab_size: int = 1000):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

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
    tok.train_from_iterator(_CORPUS * 20, trainer=trainer)
    return tok


def build_tiny_vlm(dir: Path, max_pixels: int = 112 * 112, seed: int = 0) -> Path:
    """Write a tiny Qwen2.5-VL checkpoint (config, weights, tokenizer, processor) into ``dir``.

    ``max_pixels`` keeps images small (112x112 -> 64 patches -> 16 image tokens), so a
    prompt with several frames stays a few hundred tokens on a CPU. Idempotent: an
    existing complete checkpoint in ``dir`` is reused.
    """
    dir = Path(dir)
    if (dir / "config.json").is_file() and (dir / "processor_config.json").is_file() and any(dir.glob("*.safetensors")):
        return dir
    dir.mkdir(parents=True, exist_ok=True)

    from sovtp.backends._torchvision_shim import ensure_torchvision

    ensure_torchvision()  # Qwen2.5-VL's processor imports torchvision (its video half)
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil
    from transformers.models.qwen2_vl.video_processing_qwen2_vl import Qwen2VLVideoProcessor

    raw = _train_tokenizer()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token=None,
        additional_special_tokens=SPECIAL_TOKENS[1:],
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    tokenizer.chat_template = QWEN_VL_CHAT_TEMPLATE
    ids = {t: raw.token_to_id(t) for t in SPECIAL_TOKENS}

    head_dim = 32
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": raw.get_vocab_size(),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "head_dim": head_dim,
            "max_position_embeddings": 4096,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [4, 6, 6]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
            "tie_word_embeddings": False,
        },
        vision_config={
            "depth": 2,
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_heads": 2,
            "out_hidden_size": 64,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "window_size": 56,
            "fullatt_block_indexes": [1],
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
        tie_word_embeddings=False,
    )
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    torch.manual_seed(seed)
    model = Qwen2_5_VLForConditionalGeneration(config).to(torch.float32).eval()
    model.generation_config.eos_token_id = ids["<|im_end|>"]
    model.generation_config.pad_token_id = ids["<|endoftext|>"]
    model.generation_config.do_sample = False
    model.save_pretrained(dir)

    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=28 * 28 * 4, max_pixels=max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    video_processor = Qwen2VLVideoProcessor(
        min_pixels=28 * 28 * 4, max_pixels=max_pixels, patch_size=14, merge_size=2, temporal_patch_size=2
    )
    processor = Qwen2_5_VLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, video_processor=video_processor, chat_template=QWEN_VL_CHAT_TEMPLATE
    )
    processor.save_pretrained(dir)
    tokenizer.save_pretrained(dir)
    # Some loaders (vLLM's HF processor path) look for the template in its own file.
    (dir / "chat_template.json").write_text(json.dumps({"chat_template": QWEN_VL_CHAT_TEMPLATE}), encoding="utf-8")
    return dir
