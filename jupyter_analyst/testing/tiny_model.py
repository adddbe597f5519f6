"""Tiny, offline, random-weight models that speak the real models' chat format.

Tests of the worker, the client and the training scripts need a model that loads through
the same ``Auto*`` classes as Qwen3.5-9B and renders tools the same way, but builds in a
few seconds with no download. The tokenizer is a byte-level BPE trained here on text made
in code; the chat template is written here in the Qwen3.5 style (see design.md §3, §7).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
"""Control tokens: never produced by decoding with ``skip_special_tokens=True``."""

TAG_TOKENS = ["<tool_call>", "</tool_call>", "<think>", "</think>", "<tool_response>", "</tool_response>"]
"""Added (non-special) tokens, so they survive decoding and the parser can see them."""

# Qwen3.5's pre-tokenizer split (Qwen2's plus combining marks).
PRETOKENIZE_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}"
    r"| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

CHAT_TEMPLATE = r"""
{%- macro render_content(content) -%}
{%- if content is string -%}{{- content -}}
{%- elif content is iterable and content is not mapping -%}
{%- for part in content -%}
{%- if part is mapping and part.text is defined -%}{{- part.text -}}
{%- elif part is string -%}{{- part -}}{%- endif -%}
{%- endfor -%}
{%- elif content is not none -%}{{- content | string -}}
{%- endif -%}
{%- endmacro -%}
{%- set sys_offset = 0 -%}
{%- if messages and messages[0].role == 'system' -%}{%- set sys_offset = 1 -%}{%- endif -%}
{%- if tools -%}
{{- '<|im_start|>system\n' -}}
{%- if sys_offset -%}{{- render_content(messages[0].content) | trim -}}{{- '\n\n' -}}{%- endif -%}
{{- '# Tools\n\nYou have access to the following functions:\n\n<tools>' -}}
{%- for tool in tools -%}{{- '\n' -}}{{- tool | tojson -}}{%- endfor -%}
{{- '\n</tools>\n\nIf you choose to call a function ONLY reply in the following format' -}}
{{- ' with NO suffix:\n\n<tool_call>\n<function=example_function_name>\n' -}}
{{- '<parameter=example_parameter_1>\nvalue_1\n' -}}
{{- '</parameter>\n</function>\n</tool_call>\n\n<IMPORTANT>\nReminder:\n' -}}
{{- '- Function calls MUST follow the specified format: an inner <function=...></function> block' -}}
{{- ' must be nested within <tool_call></tool_call> XML tags\n- Required parameters MUST be specified\n' -}}
{{- '- You may provide optional reasoning for your function call in natural language BEFORE the' -}}
{{- ' function call, but NOT after\n</IMPORTANT><|im_end|>\n' -}}
{%- elif sys_offset -%}
{{- '<|im_start|>system\n' + (render_content(messages[0].content) | trim) + '<|im_end|>\n' -}}
{%- endif -%}
{%- set ns = namespace(last_query=-1) -%}
{%- for message in messages -%}
{%- if message.role == 'user' -%}{%- set ns.last_query = loop.index0 -%}{%- endif -%}
{%- endfor -%}
{%- for message in messages -%}
{%- set content = render_content(message.content) -%}
{%- if message.role == 'system' -%}
{%- if loop.index0 >= sys_offset -%}{{- '<|im_start|>system\n' + content + '<|im_end|>\n' -}}{%- endif -%}
{%- elif message.role == 'user' -%}
{{- '<|im_start|>user\n' + content + '<|im_end|>\n' -}}
{%- elif message.role == 'assistant' -%}
{%- set reasoning = '' -%}
{%- if message.reasoning_content is defined and message.reasoning_content is string -%}
{%- set reasoning = message.reasoning_content -%}
{%- elif '</think>' in content -%}
{%- set reasoning = content.split('</think>')[0].split('<think>')[-1] -%}
{%- set content = content.split('</think>')[-1] -%}
{%- endif -%}
{%- set reasoning = reasoning | trim -%}
{%- set content = content | trim -%}
{{- '<|im_start|>assistant\n' -}}
{%- if loop.index0 > ns.last_query and reasoning -%}
{{- '<think>\n' -}}
{%- generation -%}{{- reasoning + '\n</think>\n\n' -}}{%- endgeneration -%}
{%- elif loop.index0 > ns.last_query -%}
{{- '<think>\n\n</think>\n\n' -}}
{%- endif -%}
{%- generation -%}
{{- content -}}
{%- if message.tool_calls is defined and message.tool_calls -%}
{%- for tool_call in message.tool_calls -%}
{%- set call = tool_call.function if tool_call.function is defined else tool_call -%}
{%- if loop.first and content -%}{{- '\n\n' -}}{%- elif not loop.first -%}{{- '\n' -}}{%- endif -%}
{{- '<tool_call>\n<function=' + call.name + '>\n' -}}
{%- if call.arguments is defined and call.arguments is mapping -%}
{%- for arg_name, arg_value in call.arguments | items -%}
{{- '<parameter=' + arg_name + '>\n' -}}
{%- if arg_value is string -%}{{- arg_value -}}{%- else -%}{{- arg_value | tojson -}}{%- endif -%}
{{- '\n</parameter>\n' -}}
{%- endfor -%}
{%- endif -%}
{{- '</function>\n</tool_call>' -}}
{%- endfor -%}
{%- endif -%}
{{- '<|im_end|>' -}}
{%- endgeneration -%}
{{- '\n' -}}
{%- elif message.role == 'tool' -%}
{%- if loop.first or messages[loop.index0 - 1].role != 'tool' -%}{{- '<|im_start|>user' -}}{%- endif -%}
{{- '\n<tool_response>\n' + content + '\n</tool_response>' -}}
{%- if loop.last or messages[loop.index0 + 1].role != 'tool' -%}{{- '<|im_end|>\n' -}}{%- endif -%}
{%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt -%}
{{- '<|im_start|>assistant\n' -}}
{%- if enable_thinking is defined and enable_thinking is false -%}{{- '<think>\n\n</think>\n\n' -}}
{%- else -%}{{- '<think>\n' -}}{%- endif -%}
{%- endif -%}
""".strip()
"""Qwen3.5-style template: XML tool calls, tool results in a user turn, ``{% generation %}``
markers around what the assistant writes (for assistant-only loss), earlier thinking kept
only after the last user query, as the real template does."""


def _corpus() -> list[str]:
    """Local training text: Python source, prose, and rendered tool-call turns."""
    import collections
    import csv
    import json as json_mod
    import textwrap

    texts: list[str] = []
    for mod in (json_mod, csv, textwrap, collections):
        try:
            texts.append(inspect.getsource(mod))
        except (OSError, TypeError):
            pass
    prose = (
        "The dataset has 1,234 rows and 12 columns. Churn rose from 14.2% to 18.9% after the "
        "price change. Customers on monthly contracts churn more often than those on yearly "
        "plans. Let me look at the distribution of tenure and the missing values first. "
        "The median income is 52,000 and the mean is higher, so the data is skewed. "
        "In conclusion, the strongest predictor of churn is the contract type."
    )
    code = (
        "import pandas as pd\nimport matplotlib.pyplot as plt\nprint(df.shape)\nprint(df.dtypes)\n"
        "df.head()\ndf.describe()\ndf.isna().sum()\ndf['churn'].value_counts(normalize=True)\n"
        "df.groupby('contract')['churn'].mean().plot(kind='bar')\nplt.title('Churn by contract')\n"
    )
    call = (
        "<|im_start|>assistant\n<think>\n\n</think>\n\n<tool_call>\n<function=add_and_execute_jupyter_code_cell>\n"
        "<parameter=code>\n" + code + "\n</parameter>\n</function>\n</tool_call><|im_end|>\n"
        "<|im_start|>user\n<tool_response>\n(1234, 12)\n</tool_response><|im_end|>\n"
        "<tool_call>\n<function=final_answer>\n<parameter=answer>\n" + prose + "\n</parameter>\n"
        "</function>\n</tool_call>\n"
        '<tool_call>\n{"name": "final_answer", "arguments": {"answer": "done"}}\n</tool_call>'
    )
    texts += [prose] * 20 + [code] * 20 + [call] * 20
    return texts


def build_tokenizer(vocab_size: int = 1200) -> Any:
    """Train a byte-level BPE on local text and wrap it with the chat template."""
    return train_tokenizer(_corpus(), vocab_size)


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    tags: Sequence[str] = TAG_TOKENS,
    chat_template: str = CHAT_TEMPLATE,
    model_max_length: int = 4096,
) -> Any:
    """A byte-level BPE (Qwen3.5's pre-tokenizer) trained on ``texts``, with the control
    tokens as special tokens and ``tags`` as added tokens, wrapped with ``chat_template``."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    tok.add_tokens([AddedToken(t, special=False, normalized=False) for t in tags])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=chat_template,
        model_max_length=model_max_length,
    )


def _config(arch: str, vocab_size: int, eos_id: int, pad_id: int) -> Any:
    """The tiny config; every Linear's out_features is a multiple of 32 (bnb 4-bit on CPU)."""
    common: dict[str, Any] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        bos_token_id=None,
    )
    if arch == "qwen3_5":
        from transformers import Qwen3_5TextConfig

        return Qwen3_5TextConfig(
            **common,
            head_dim=16,
            linear_num_key_heads=4,
            linear_num_value_heads=32,
            linear_key_head_dim=8,
            linear_value_head_dim=4,
            layer_types=["linear_attention"] * 3 + ["full_attention"],
        )
    if arch == "qwen2":
        from transformers import Qwen2Config

        # head_dim = 64 / 2 = 32 so the k/v projections (2 heads x 32) stay multiples of 32.
        common.update(num_attention_heads=2, num_key_value_heads=1)
        return Qwen2Config(**common)
    if arch == "qwen3_5_vl":
        from transformers import Qwen3_5Config, Qwen3_5VisionConfig

        # The text tower is the tiny qwen3_5; the vision tower is as small as the config allows
        # (it never sees an image here) but real, so the module names are the checkpoint's;
        # every Linear in it is a multiple of 32 wide too (bnb 4-bit on CPU).
        text = _config("qwen3_5", vocab_size, eos_id, pad_id)
        vision = Qwen3_5VisionConfig(
            depth=1,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            out_hidden_size=text.hidden_size,
            patch_size=4,
            num_position_embeddings=16,
        )
        # The image/video ids sit in the padding rows past the tokenizer (it never emits them).
        return Qwen3_5Config(
            text_config=text.to_dict(),
            vision_config=vision.to_dict(),
            image_token_id=vocab_size - 1,
            video_token_id=vocab_size - 2,
            vision_start_token_id=vocab_size - 3,
            vision_end_token_id=vocab_size - 4,
            tie_word_embeddings=False,
        )
    raise ValueError(f"unknown tiny architecture {arch!r}; use 'qwen3_5', 'qwen3_5_vl' or 'qwen2'")


def build_tiny_model(path: Path, arch: str = "qwen3_5", seed: int = 0) -> Path:
    """Write tokenizer + config + random weights to ``path``; loadable offline via Auto*.

    ``arch="qwen3_5_vl"`` writes what the real Qwen3.5 / CoPaw-Flash checkpoints are: a
    ``Qwen3_5ForConditionalGeneration`` (config ``architectures`` says so) whose text layers
    are named ``model.language_model.layers.N``, with a tiny vision tower beside them.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForImageTextToText, GenerationConfig

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    eos_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    pad_id = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    # Round the vocabulary up so the lm_head's out_features is a multiple of 32 as well
    # (qwen3_5_vl: with room past the tokenizer's last id for the four vision ids).
    vocab = (len(tokenizer) + (4 if arch == "qwen3_5_vl" else 0) + 31) // 32 * 32
    config = _config(arch, vocab, eos_id, pad_id)
    torch.manual_seed(seed)
    # Auto*ForCausalLM would build a multimodal config's text tower only (model.layers.N).
    auto = AutoModelForImageTextToText if arch == "qwen3_5_vl" else AutoModelForCausalLM
    model = auto.from_config(config, dtype=torch.float32)
    model.generation_config = GenerationConfig(
        eos_token_id=[eos_id, pad_id], pad_token_id=pad_id, do_sample=False
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def build_tiny_lora(base: Path, path: Path, seed: int = 0, r: int = 8, text_only: bool = False) -> Path:
    """Write a LoRA adapter for ``base`` whose B matrices are non-zero, so it changes outputs.

    The base is loaded with the class its config names, as a trainer loading the checkpoint
    whole would: for a ``qwen3_5_vl`` base the LoRA then targets the text tower's linear
    layers by their short names and peft saves them as
    ``base_model.model.model.language_model.layers.N...`` (the CoPaw-Flash LoRA's layout).
    ``text_only`` loads the base as a text-only causal LM instead (names ``model.layers.N``).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForImageTextToText

    path = Path(path)
    base_config = AutoConfig.from_pretrained(str(base))
    multimodal = not text_only and base_config.get_text_config() is not base_config
    auto = AutoModelForImageTextToText if multimodal else AutoModelForCausalLM
    model = auto.from_pretrained(str(base), dtype=torch.float32)
    targets: Any = "all-linear"
    if multimodal:  # the text tower only, by short names, as a text LoRA recipe lists them
        targets = sorted(
            {
                name.rsplit(".", 1)[-1]
                for name, module in model.named_modules()
                if isinstance(module, torch.nn.Linear) and ".language_model." in name
            }
        )
    config = LoraConfig(
        r=r, lora_alpha=2 * r, target_modules=targets, lora_dropout=0.0, task_type="CAUSAL_LM"
    )
    peft_model = get_peft_model(model, config)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.3)
    peft_model.save_pretrained(str(path))
    cfg_file = path / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg["base_model_name_or_path"] = str(base)
    cfg_file.write_text(json.dumps(cfg, indent=2))
    return path
