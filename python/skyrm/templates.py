"""``--chat-template FILE|NAME``: the chat template to train with instead of the tokenizer's own, for base models
that have none (or to train in another format). A file holds a Jinja template in Hugging Face's dialect (the
``messages`` list, ``bos_token``, ``eos_token``, ``add_generation_prompt``); a name picks one of the formats below.
The template is saved with the exported tokenizer, so every tool that loads the model renders pairs as training did.

The named formats write their role markers as plain text: a base model's tokenizer may not have them as single
tokens (then each is a few tokens, which a reward model learns as well). No token is added to the vocabulary.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["TEMPLATES", "chat_template"]

#: The built-in formats: ChatML (Qwen, SmolLM2, ...), Llama 3's headers, and Zephyr's role tags.
TEMPLATES = {
    "chatml": (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    ),
    "llama-3": (
        "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
        "{{ m['content'] | trim }}<|eot_id|>{% endfor %}"
        "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
    ),
    "zephyr": (
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
    ),
}


def chat_template(spec: str) -> str:
    """The template ``spec`` names: a file's text, else a built-in format; anything else is a one-line error."""
    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"--chat-template {spec}: cannot read the file ({e})") from None
        if "messages" not in text:
            raise ValueError(f"--chat-template {spec}: not a chat template (it never reads `messages`)")
        return text
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    raise ValueError(f"--chat-template {spec}: no such file, and not a built-in format ({', '.join(TEMPLATES)})")
