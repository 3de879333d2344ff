"""Chat rendering follows DecodingTrust's conversation templates, quirks included."""

from __future__ import annotations

from comptrust.chat import LLAMA2_DEFAULT_SYSTEM, collapse, render

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
