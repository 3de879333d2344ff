"""Chat rendering follows DecodingTrust's conversation templates, quirks included."""

from __future__ import annotations

import pytest

from comptrust.chat import LLAMA2_DEFAULT_SYSTEM, collapse, render
from comptrust.errors import ConfigError

USER = {"role": "user", "content": "Hello"}


def test_last_system_message_wins():
    conv = collapse([{"role": "system", "content": "A"}, USER, {"role": "system", "content": "B"}])
    assert conv.system == "B" and conv.turns == (USER,)


def test_llama2_default_and_custom_system_quirk():
    assert render([USER], "llama-2") == LLAMA2_DEFAULT_SYSTEM + "Hello[/INST]"
    # a custom system text replaces the whole <s>[INST] <<SYS>> header, as upstream does
    assert render([{"role": "system", "content": "Be nice."}, USER], "llama-2") == "Be nice.Hello[/INST]"


def test_llama2_multi_turn():
    msgs = [{"role": "system", "content": "S "}, USER, {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": "Bye"}]
    assert render(msgs, "llama-2") == "S Hello[/INST] Hi </s><s>[INST] Bye [/INST]"


def test_vicuna():
    msgs = [{"role": "system", "content": "Sys."}, USER, {"role": "assistant", "content": "Hi"},
            {"role": "user", "content": "Bye"}]
    assert render(msgs, "vicuna_v1.1") == "Sys. USER: Hello ASSISTANT: Hi</s>USER: Bye ASSISTANT:"
    assert render([USER], "vicuna_v1.1").startswith("A chat between a curious user")


def test_model_template_gets_collapsed_system(tiny_llama):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    text = render([{"role": "system", "content": "A"}, {"role": "system", "content": "B"}, USER], "model", tok)
    assert text == "<|im_start|>system\nB<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"


# ---- base models (raw) and templates that reject a system role --------------------------------

# Gemma 1/2's template, reduced to what matters here: it raises on a system message, alternates
# user/model turns and opens the model's turn.
GEMMA_LIKE = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}"
    "{% endif %}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
)


def _tokenizer(tiny_llama, template):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llama)
    tok.chat_template = template
    return tok


def test_raw_zero_shot_is_system_blank_line_user_then_answer_cue():
    msgs = [{"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Is the sky blue? Answer yes or no."}]
    assert render(msgs, "raw") == "You are a helpful assistant.\n\nIs the sky blue? Answer yes or no.\nAnswer:"
    assert render([USER], "raw") == "Hello\nAnswer:"  # no system text: no blank line either


def test_raw_few_shot_turns_read_as_answered_examples():
    from comptrust.perspectives.base import classification_messages

    msgs = classification_messages("Say positive or negative.", "Great film!",
                                   demos=[("Awful.", "negative"), ("Lovely.", "positive")])
    text = render(msgs, "raw")
    system = msgs[0]["content"]
    ack = msgs[2]["content"]
    assert text == (f"{system}\n\nSay positive or negative.\nAnswer: {ack}\n\n"
                    "Awful.\nAnswer: Negative\n\nLovely.\nAnswer: Positive\n\nGreat film!\nAnswer:")


def test_raw_keeps_decodingtrust_semantics_last_system_wins():
    msgs = [{"role": "system", "content": "A"}, USER, {"role": "system", "content": "B"}]
    assert render(msgs, "raw") == "B\n\nHello\nAnswer:"
    # two user turns in a row (no answer between them) are separated by a blank line, not a cue
    assert render([USER, {"role": "user", "content": "Bye"}], "raw") == "Hello\n\nBye\nAnswer:"


def test_model_without_template_chooses_raw_with_one_warning(tiny_llama, capsys, monkeypatch):
    import comptrust.chat as chat

    monkeypatch.setattr(chat, "_warned", set())
    tok = _tokenizer(tiny_llama, None)
    assert chat.choose_template("model", tok) == ("raw", chat.NO_TEMPLATE_WARNING)
    assert chat.choose_template("model", tok) == ("raw", chat.NO_TEMPLATE_WARNING)
    assert capsys.readouterr().err.count("no chat template") == 1  # printed once
    assert chat.choose_template("vicuna_v1.1", tok) == ("vicuna_v1.1", None)  # an explicit choice is kept
    assert chat.choose_template("model", _tokenizer(tiny_llama, GEMMA_LIKE)) == ("model", None)


def test_automatic_raw_is_recorded_and_keyed_as_raw(tiny_llama, tmp_path):
    """The fingerprint (cache key) and the run record say 'raw', so cached texts never mix with a template's."""
    import json
    import shutil

    from comptrust.backends.hf.backend import HFBackend

    folder = tmp_path / "base"
    shutil.copytree(tiny_llama, folder)
    config = folder / "tokenizer_config.json"
    data = json.loads(config.read_text())
    data.pop("chat_template", None)
    config.write_text(json.dumps(data))
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    backend = HFBackend.from_path(folder, batch_size=2)
    info = backend.info()
    assert info["chat_template"] == "raw" and "no chat template" in info["chat_template_warning"]
    assert "-raw-" in backend.fingerprint
    assert backend.prompt_text([USER]) == "Hello\nAnswer:"
    explicit = HFBackend.from_path(folder, batch_size=2, chat_template="raw")
    assert explicit.fingerprint == backend.fingerprint and explicit.info()["chat_template_warning"] is None


def test_template_rejecting_system_gets_it_folded_into_first_user_turn(tiny_llama):
    tok = _tokenizer(tiny_llama, GEMMA_LIKE)
    bos = tok.bos_token
    msgs = [{"role": "system", "content": "A"}, {"role": "system", "content": "Be brief."}, USER,
            {"role": "assistant", "content": "Hi"}, {"role": "user", "content": "Bye"}]
    assert render(msgs, "model", tok) == (
        f"{bos}<start_of_turn>user\nBe brief.\n\nHello<end_of_turn>\n<start_of_turn>model\nHi<end_of_turn>\n"
        "<start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n")
    # without a system message nothing is folded
    assert render([USER], "model", tok) == f"{bos}<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n"


def test_template_refusing_for_another_reason_is_a_one_line_error(tiny_llama):
    tok = _tokenizer(tiny_llama, GEMMA_LIKE)
    with pytest.raises(ConfigError, match="roles must alternate") as err:
        render([USER, {"role": "user", "content": "again"}], "model", tok)
    assert "--chat-template raw" in err.value.fix
    with pytest.raises(ConfigError, match="roles must alternate"):  # system folded, still two user turns
        render([{"role": "system", "content": "S"}, USER, {"role": "user", "content": "again"}], "model", tok)
