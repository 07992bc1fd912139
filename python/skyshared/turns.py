"""HelpSteer2's turn markers, read alike by skyfilter's layouts and skyrm's reader (standard library only): a
prompt string whose earlier turns are marked ``<extra_id_1>User`` / ``<extra_id_1>Assistant`` is those turns."""

from __future__ import annotations

import re

__all__ = ["HELPSTEER_MARK", "parse_helpsteer_prompt"]

#: What a prompt with HelpSteer2's turn markers holds.
HELPSTEER_MARK = "<extra_id_1>"
_TURN = re.compile(r"\n?<extra_id_1>(User|Assistant)\n?")


def parse_helpsteer_prompt(text: str | None) -> list[dict] | None:
    """A HelpSteer2 prompt as messages: the text before the first marker is the first user turn, each marker
    starts a turn of its role."""
    if text is None:
        return None
    parts = _TURN.split(text)
    messages = [{"role": "user", "content": parts[0]}] if parts[0] or len(parts) == 1 else []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        messages.append({"role": speaker.lower(), "content": content})
    return messages
