"""The chat format: the training data writer and transformers' ``apply_chat_template`` (the template shipped in
``tokenizer_config.json``) give the same text and the same ids; loss weights cover the assistant's tokens."""

from __future__ import annotations

import pytest

from posttrain import chat, sft
from tests.posttrain_support import small_chat_tokenizer

CONVERSATIONS = [
    [{"role": "user", "content": "What is 37 + 48?"}, {"role": "assistant", "content": "85"}],
    [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Convert 3.5 miles to km."},
        {
            "role": "assistant",
            "content": "",
            "reasoning": "I need the unit tool.",
            "tool_calls": [{"name": "convert_units", "arguments": {"value": 3.5, "from": "mi", "to": "km"}}],
        },
        {"role": "tool", "content": '{"result": 5.63}'},
        {"role": "assistant", "content": "3.5 miles are 5.63 km.", "reasoning": "The tool said 5.63."},
    ],
    [{"role": "user", "content": "서울의 인구는?"}, {"role": "assistant", "content": "약 940만 명입니다."}],
]


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    """The small chat tokenizer, and the same loaded by transformers from its folder."""
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    path = small_chat_tokenizer(tmp_path_factory.mktemp("tok"))
    return Tokenizer.from_file(str(path)), AutoTokenizer.from_pretrained(str(path.parent))


def _encode(tok):
    return lambda text: tok.encode(text, add_special_tokens=False).ids


@pytest.mark.parametrize("conversation", CONVERSATIONS, ids=["direct", "tools+reasoning", "korean"])
def test_apply_chat_template_gives_the_training_ids(tokenizers, conversation):
    tok, hf = tokenizers
    ours = chat.encode_conversation(_encode(tok), conversation)
    assert hf.apply_chat_template(conversation, tokenize=False) == chat.render(conversation)
    ids = hf.apply_chat_template(conversation, tokenize=True)
    ids = ids if isinstance(ids, list) else ids["input_ids"]
    assert ids == ours.ids
    # piecewise encoding (for the loss weights) equals encoding the whole rendering at once
    assert ours.ids == _encode(tok)(chat.render(conversation))


@pytest.mark.parametrize("reasoning", [True, False])
def test_generation_prompt_of_each_mode_matches_transformers(tokenizers, reasoning):
    tok, hf = tokenizers
    conversation = CONVERSATIONS[0][:1]
    text = hf.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True, enable_thinking=reasoning)
    assert text == chat.render(conversation, add_generation_prompt=True, reasoning=reasoning)
    assert text.endswith("<|assistant|><think>\n" if reasoning else "<|assistant|><think>\n\n</think>\n")
    assert chat.encode_prompt(_encode(tok), conversation, reasoning=reasoning) == _encode(tok)(text)


def test_loss_weights_cover_exactly_the_assistant_turns(tokenizers):
    tok, _ = tokenizers
    conversation = CONVERSATIONS[1]
    enc = chat.encode_conversation(_encode(tok), conversation)
    trained = tok.decode([i for i, w in zip(enc.ids, enc.loss_weights) if w], skip_special_tokens=False)
    expected = "".join(chat.assistant_body(m) for m in conversation if m["role"] == "assistant")
    assert trained == expected
    assert "<|assistant|>" not in trained and "Convert 3.5 miles" not in trained and "5.63}" not in trained
    assert trained.count("<|endoftext|>") == 2  # each assistant turn learns to stop


def test_parse_response_splits_trajectory_answer_and_tool_calls():
    parsed = chat.parse_response(
        'add the numbers\n</think>\nThe sum is 85.\n<tool_call>{"name": "calculator", "arguments": '
        '{"expression": "37+48"}}</tool_call><|endoftext|>',
        reasoning=True,
    )
    assert parsed.reasoning == "add the numbers" and parsed.answer == "The sum is 85." and parsed.well_formed
    assert parsed.tool_calls == [{"name": "calculator", "arguments": {"expression": "37+48"}}]
    assert not chat.parse_response("no closing tag, 85", reasoning=True).well_formed
    assert not chat.parse_response("\n</think>\n85", reasoning=True).well_formed  # empty trajectory
    assert chat.parse_response("85<|endoftext|>", reasoning=False).answer == "85"


def test_bad_conversations_fail_in_one_line():
    with pytest.raises(chat.ChatFormatError, match="role 'bot'"):
        chat.render([{"role": "bot", "content": "hi"}])
    with pytest.raises(chat.ChatFormatError, match="special token"):
        chat.render([{"role": "user", "content": "fake <|assistant|> turn"}])
    with pytest.raises(chat.ChatFormatError, match="only assistant turns"):
        chat.render([{"role": "user", "content": "x", "reasoning": "y"}])


def test_packing_keeps_whole_conversations_and_counts_the_ones_too_long(tokenizers):
    tok, _ = tokenizers
    convs = [
        {"id": str(i), "source": "family:arithmetic", "mode": "non_reasoning", "messages": CONVERSATIONS[i % 3]}
        for i in range(30)
    ]
    long = [{"role": "user", "content": "word " * 600}, {"role": "assistant", "content": "ok"}]
    convs.append({"id": "long", "source": "thinking", "mode": "reasoning", "messages": long})
    pad = tok.token_to_id("<|pad|>")
    packed = sft.pack_conversations(convs, _encode(tok), seq_length=255, pad_id=pad, seed=0)
    assert packed.dropped_too_long == 1 and packed.conversations == 30
    assert packed.samples.shape[1] == 256 and (packed.loss_weights[packed.samples == pad] == 0).all()
    assert packed.tokens == int((packed.samples != pad).sum())
    assert packed.trained_tokens == int(packed.loss_weights.sum())
    eos = tok.token_to_id("<|endoftext|>")
    assert int((packed.samples == eos).sum()) == sum(
        1 for c in convs[:30] for m in c["messages"] if m["role"] == "assistant"
    )
    assert packed.by_source == {"family:arithmetic": {"non_reasoning": 30}}
