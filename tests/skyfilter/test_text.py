"""The Rust tokenizers against Python's own definitions, over every code point."""

from __future__ import annotations

import sys
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from skyfilter import _core

from tests.skyfilter.reference import tokens

# Every code point a str can hand to Rust (all but the surrogates), including those this interpreter's Unicode
# version leaves unassigned and the Rust tables' newer version assigns: the tokenizers follow the interpreter.
EVERY = [chr(cp) for cp in range(sys.maxunicode + 1) if unicodedata.category(chr(cp)) != "Cs"]


def _chunks(items: list[str], size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


@pytest.mark.parametrize("tokenizer", ["words", "whitespace"])
def test_every_code_point_tokenizes_as_python(tokenizer):
    # Each character doubled and alone between spaces, then next to ASCII letters: exercises the word-character
    # class, lower-casing (including multi-character and context-dependent mappings) and whitespace.
    for chunk in _chunks(EVERY, 4096):
        for text in (" ".join(c + c for c in chunk), "".join(f"a{c}B{c}" for c in chunk)):
            assert _core.tokenize(text, tokenizer) == tokens(text, tokenizer), (tokenizer, chunk[0], chunk[-1])


TRICKY = ["İ", "ΣΑΣ", "ς", "ß", "ﬁ", "ǅ", "½", "²", "Ⅻ", "_", "a", "I", "x", "--", "...", "'s", "\u0301", "\u200b"]
tricky_text = st.lists(
    st.one_of(st.sampled_from(TRICKY), st.text(st.characters(exclude_categories=("Cs", "Cn")), max_size=6)),
    max_size=30,
).map(lambda parts: " ".join(parts))


@settings(max_examples=300, deadline=None)
@given(text=tricky_text, tokenizer=st.sampled_from(["words", "whitespace"]))
def test_random_texts_tokenize_as_python(text, tokenizer):
    assert _core.tokenize(text, tokenizer) == tokens(text, tokenizer)


@pytest.mark.skipif(unicodedata.unidata_version >= "16.0", reason="U+A7CB is assigned from Unicode 16 on")
def test_characters_newer_than_the_interpreter_end_tokens():
    # U+A7CB (Unicode 16) lower-cases to U+0264, a word character, under the Rust tables; this interpreter does
    # not know it, so it neither lower-cases it nor counts it as \w: it ends the token, next to sigmas too.
    assert _core.tokenize("ab\ua7cbcd") == ["ab", "cd"]
    assert _core.tokenize("ΣΑΣ ab\ua7cbcd ΣΑΣ") == ["σας", "ab", "cd", "σας"]


def test_unknown_tokenizer_is_a_clear_error():
    with pytest.raises(_core.SkyfilterError, match="unknown tokenizer"):
        _core.tokenize("x", "bpe")
