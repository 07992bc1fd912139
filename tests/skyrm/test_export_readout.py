"""The exported model scores the same in Hugging Face as in skyrm (issue 17, section 3).

Hugging Face's ``...ForSequenceClassification`` reads the logit at a row's last token that is not
``config.pad_token_id``; skyrm reads it at the last attended token. For each tokenizer kind below, built offline
like the real one, a tiny random-init model is trained a few steps through skyrm's trainer, exported, reloaded with
plain ``AutoModelForSequenceClassification`` and ``AutoTokenizer``, and scored by Hugging Face's own forward (a
right-padded batch padded by the tokenizer, and one row at a time): equal, in fp32 to 1e-5, to skyrm's rewards
(the training batcher, padded and packed), to the held-out statistics measured in training, and to ``skyrm.eval``.

* ``llama-3.1``: no pad token, EOS ``<|eot_id|>`` ending every turn, a reserved ``<|finetune_right_pad_id|>``
  (Llama-3.1-Instruct): the reserved pad is used.
* ``gemma-2``: Gemma-2's own ``<pad>`` (id 0), turns ending in ``<end_of_turn>`` and the conversation in
  ``<eos>``: the tokenizer's pad is kept.
* ``no-pad``: no pad and none reserved, EOS ``</s>`` ending every turn: a pad token is added and the
  embeddings grow by a row.
"""

from __future__ import annotations

import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
from skyrm.batching import in_pair_order, micro_batches  # noqa: E402
from skyrm.config import load_config  # noqa: E402
from skyrm.data import encode_pairs, read_pairs  # noqa: E402
from skyrm.eval.runner import Benchmark, evaluate, load_model  # noqa: E402
from skyrm.model import rewards  # noqa: E402
from skyrm.padding import ADDED_PAD, choose_pad  # noqa: E402
from skyrm.trainer import train  # noqa: E402

LLAMA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
                  "{{ m['content'] | trim }}<|eot_id|>{% endfor %}")  # fmt: skip
GEMMA_TEMPLATE = ("{{ bos_token }}{% for m in messages %}<start_of_turn>"
                  "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] | trim }}<end_of_turn>"
                  "{% if loop.last %}{{ eos_token }}{% else %}\n{% endif %}{% endfor %}")  # fmt: skip
PLAIN_TEMPLATE = "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}</s>{% endfor %}"

#: kind: (special tokens, specials first in the vocabulary, bos, eos, pad, template, model type, the pad expected)
KINDS = {
    "llama-3.1": (["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|finetune_right_pad_id|>",
                   "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"], False,
                  "<|begin_of_text|>", "<|eot_id|>", None, LLAMA_TEMPLATE, "llama", "<|finetune_right_pad_id|>"),
    "gemma-2": (["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "<end_of_turn>"], True,
                "<bos>", "<eos>", "<pad>", GEMMA_TEMPLATE, "gemma2", "<pad>"),
    "no-pad": (["<s>", "</s>"], False, "<s>", "</s>", None, PLAIN_TEMPLATE, "llama", ADDED_PAD),
}  # fmt: skip
WORDS = ["apple", "river", "stone", "cloud", "piano", "lemon", "tiger", "glass", "north", "quiet"]


def make_tokenizer(specials: list[str], first: bool, bos: str, eos: str, pad: str | None, template: str):
    """A byte-level fast tokenizer (one token per byte) with the given special tokens, that puts BOS in front of
    what it encodes, as Llama's and Gemma's do."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = [*specials, *alphabet] if first else [*alphabet, *specials]
    vocab = {token: i for i, token in enumerate(tokens)}
    inner = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    inner.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    inner.decoder = decoders.ByteLevel()
    inner.add_special_tokens(specials)
    inner.post_processor = processors.TemplateProcessing(single=f"{bos} $A", special_tokens=[(bos, vocab[bos])])
    named = {"bos_token": bos, "eos_token": eos} | ({"pad_token": pad} if pad else {})
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=inner, **named)
    tokenizer.chat_template = template
    return tokenizer


def make_model(kind: str, tokenizer):
    """A 2-layer random-init reward model of the kind's architecture; the config's pad as the real one has it."""
    size = {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "num_labels": 1, "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id}  # fmt: skip
    torch.manual_seed(0)
    if KINDS[kind][6] == "gemma2":
        config = transformers.Gemma2Config(head_dim=16, eos_token_id=tokenizer.eos_token_id, **size)
        return transformers.Gemma2ForSequenceClassification(config)
    end_of_text = tokenizer.convert_tokens_to_ids("<|end_of_text|>") if kind == "llama-3.1" else None
    eos = [i for i in (end_of_text, tokenizer.eos_token_id) if i is not None]  # Llama-3.1 lists several
    config = transformers.LlamaConfig(eos_token_id=eos, tie_word_embeddings=False, **size)
    return transformers.LlamaForSequenceClassification(config)


def write_pairs(path, n: int, seed: int) -> None:
    """Pairs of varied lengths (so that batches are padded); chosen answers are long and polite."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        topic = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 8)))
        rows.append({"prompt": f"Tell me about {topic}.", "chosen": f"Sure, happy to help with {topic}.",
                     "rejected": f"No, {topic}" + "!" * rng.randint(0, 5)})  # fmt: skip
    pq.write_table(pa.Table.from_pylist(rows), path)


@pytest.fixture(scope="module", params=list(KINDS))
def exported(request, tmp_path_factory):
    kind = request.param
    specials, first, bos, eos, pad, template, _, _ = KINDS[kind]
    folder = tmp_path_factory.mktemp(kind)
    tokenizer = make_tokenizer(specials, first, bos, eos, pad, template)
    make_model(kind, tokenizer).save_pretrained(folder / "base")
    tokenizer.save_pretrained(folder / "base")
    write_pairs(folder / "train.parquet", 24, 0)
    write_pairs(folder / "held_out.parquet", 8, 1)
    config = load_config(preset="tiny", overrides={
        "model": str(folder / "base"), "data": str(folder / "train.parquet"),
        "eval_data": str(folder / "held_out.parquet"), "output_dir": str(folder / "run"), "max_steps": 3,
        "batch_pairs": 4, "micro_batch_tokens": 1024, "max_length": 256, "lr": 3e-3, "report_to": "none",
    })  # fmt: skip
    summary = train(config, log=lambda _: None)
    out = folder / "run" / "model"
    model = transformers.AutoModelForSequenceClassification.from_pretrained(out, dtype=torch.float32).eval()
    loaded = transformers.AutoTokenizer.from_pretrained(out)
    held_out = encode_pairs(read_pairs(str(folder / "held_out.parquet")), loaded, 256)
    return kind, folder, summary, model, loaded, held_out


def hf_scores(model, tokenizer, sequences: list[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Hugging Face's own readout: a right-padded batch (padded by the tokenizer), and each row alone."""
    tokenizer.padding_side = "right"
    batch = tokenizer.pad({"input_ids": sequences}, padding=True, return_tensors="pt")
    with torch.no_grad():
        padded = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, 0]
        alone = torch.cat([model(input_ids=torch.tensor([s])).logits[:, 0] for s in sequences])
    return padded, alone


def test_the_pad_is_never_a_token_that_ends_a_sequence(exported):
    kind, folder, _, model, tokenizer, held_out = exported
    assert tokenizer.pad_token == KINDS[kind][7]
    assert model.config.pad_token_id == tokenizer.pad_token_id
    assert model.get_input_embeddings().weight.shape[0] > tokenizer.pad_token_id
    ends = {s[-1] for s in [*held_out.chosen, *held_out.rejected]}
    assert tokenizer.pad_token_id not in ends and tokenizer.pad_token_id != tokenizer.eos_token_id
    if kind == "no-pad":  # a token was added, and the embeddings grew by its row
        base = transformers.AutoTokenizer.from_pretrained(folder / "base")
        assert len(tokenizer) == len(base) + 1 and model.config.vocab_size == len(base) + 1


def test_hugging_face_reads_the_rewards_skyrm_trained(exported):
    kind, _, summary, model, tokenizer, held_out = exported
    sequences = [s for pair in zip(held_out.chosen, held_out.rejected, strict=True) for s in pair]
    padded, alone = hf_scores(model, tokenizer, sequences)
    torch.testing.assert_close(padded, alone, rtol=0, atol=1e-5)
    pairs = list(range(len(held_out)))
    for packing in (False, True):  # skyrm's training batcher, padded rows and packed rows
        ours = []
        batches = micro_batches(held_out.chosen, held_out.rejected, pairs, 1024, tokenizer.pad_token_id,
                                packing=packing)  # fmt: skip
        for batch in batches:
            with torch.no_grad():
                ours.append(rewards(model, batch.input_ids, batch.attention_mask, batch.position_ids, batch.ends))
        torch.testing.assert_close(in_pair_order(batches, ours, pairs), alone, rtol=0, atol=1e-5)
    # the held-out rewards measured in training (the model before export) are the ones Hugging Face reads
    assert alone.mean().item() == pytest.approx(summary["eval"]["reward_mean"], abs=1e-5)
    assert alone.std().item() == pytest.approx(summary["eval"]["reward_std"], abs=1e-5)
    assert (alone[0::2] > alone[1::2]).float().mean().item() == pytest.approx(summary["eval"]["accuracy"])


def test_skyrm_eval_reads_what_hugging_face_reads(exported):
    _, folder, _, _, _, _ = exported
    model, tokenizer = load_model(str(folder / "run" / "model"))
    table = read_pairs(str(folder / "held_out.parquet")).to_pylist()
    bench = Benchmark("held-out", "rewardbench", [r["prompt"] for r in table],
                      [[r["chosen"], r["rejected"]] for r in table], [1] * len(table), ["held-out"] * len(table),
                      [str(i) for i in range(len(table))])  # fmt: skip
    records = evaluate(model, tokenizer, bench, token_budget=1024, progress=False)
    ours = torch.tensor([v for r in records for v in (r["chosen"], r["rejected"])])
    encoded = encode_pairs(pa.Table.from_pylist(table), tokenizer, 256)
    assert len(encoded) == len(table)
    sequences = [s for pair in zip(encoded.chosen, encoded.rejected, strict=True) for s in pair]
    _, alone = hf_scores(model.float(), tokenizer, sequences)
    torch.testing.assert_close(ours, alone, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("kind", "declared", "eos_token_id", "expected"),
    [
        ("llama-3.1", "<|eot_id|>", None, "<|finetune_right_pad_id|>"),  # pad = EOS, as many recipes set it
        ("llama-3.1", "<|end_of_text|>", "<|end_of_text|>", "<|finetune_right_pad_id|>"),  # an EOS of the config
        ("gemma-2", "<end_of_turn>", None, "<pad>"),  # a token the chat template writes
        ("gemma-2", "<unk>", None, "<unk>"),  # a usable pad is kept
        ("no-pad", "</s>", None, ADDED_PAD),
    ],
)
def test_the_policy_never_keeps_a_pad_that_can_end_a_sequence(kind, declared, eos_token_id, expected):
    specials, first, bos, eos, _, template, _, _ = KINDS[kind]
    tokenizer = make_tokenizer(specials, first, bos, eos, declared, template)
    size = len(tokenizer)
    config_eos = [tokenizer.convert_tokens_to_ids(eos_token_id)] if eos_token_id else None
    pad_id = choose_pad(tokenizer, config_eos)
    assert tokenizer.pad_token == expected and pad_id == tokenizer.pad_token_id
    assert len(tokenizer) == size + (expected == ADDED_PAD)
    assert choose_pad(tokenizer, config_eos) == pad_id and len(tokenizer) == size + (expected == ADDED_PAD)


def test_the_config_names_the_attention_the_model_needs(exported):
    """Gemma-2 needs eager attention (SDPA drops its logit soft-capping): the exported config says so, and a plain
    load uses it; Llama needs nothing and gets transformers' default."""
    kind, folder, _, model, _, _ = exported
    saved = json.loads((folder / "run" / "model" / "config.json").read_text())
    needed = "eager" if KINDS[kind][6] == "gemma2" else None
    assert saved.get("attn_implementation") == needed
    assert model.config._attn_implementation == (needed or "sdpa")
