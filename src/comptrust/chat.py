"""Render OpenAI-style messages into a prompt string, as DecodingTrust does for HF models.

DecodingTrust feeds HF models through FastChat-style conversation templates:
a ``system`` message *replaces* the template's system text, several system
messages overwrite each other (only the last survives), user/assistant turns
alternate.  We apply the same semantics to the model's own chat template
(``--chat-template model``, the default) and offer DecodingTrust's ``llama-2``
and ``vicuna_v1.1`` templates verbatim, since the paper's models used them.

Base models have no chat template: ``raw`` (chosen automatically, with a warning, for a model
without one) renders plain text in HELM's generation-adapter layout, and a template that rejects
the system role (Gemma 1/2's) gets the system text folded into the first user turn.  Both are
described, with why, in docs/prompts.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass

from comptrust.errors import ConfigError
from comptrust.types import Message

LLAMA2_DEFAULT_SYSTEM = (
    "<s>[INST] <<SYS>>\nYou are a helpful, respectful and honest assistant. Always answer as helpfully as "
    "possible, while being safe. Your answers should not include any harmful, unethical, racist, sexist, "
    "toxic, dangerous, or illegal content. Please ensure that your responses are socially unbiased and "
    "positive in nature.\n\nIf a question does not make any sense, or is not factually coherent, explain "
    "why instead of answering something not correct. If you don't know the answer to a question, please "
    "don't share false information.\n<</SYS>>\n\n"
)
VICUNA_DEFAULT_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)
TEMPLATES = ("model", "raw", "llama-2", "vicuna_v1.1")
RAW_ANSWER_CUE = "Answer:"  # HELM's output noun ("Answer: ", its DecodingTrust OOD-knowledge run spec)
SYSTEM_FOLD_SEPARATOR = "\n\n"  # system text + this + first user turn (Gemma 3's own template does the same)
NO_TEMPLATE_WARNING = ("this model has no chat template: prompts use comptrust's 'raw' format (plain text, "
                       "docs/prompts.md); pass --chat-template to choose another")


@dataclass(frozen=True)
class Conversation:
    """Messages after DecodingTrust's system-message semantics: one system text (or None)."""

    system: str | None
    turns: tuple[Message, ...]


def collapse(messages: Sequence[Message]) -> Conversation:
    """Apply 'last system message wins' and keep user/assistant turns in order."""
    system: str | None = None
    turns: list[Message] = []
    for m in messages:
        role = m["role"]
        if role == "system":
            system = m["content"]
        elif role in ("user", "assistant"):
            turns.append({"role": role, "content": m["content"]})
        else:
            raise ConfigError(f"unknown chat role {role!r}", "use system, user or assistant")
    return Conversation(system, tuple(turns))


def render_llama2(conv: Conversation) -> str:
    """DecodingTrust's ``llama-2`` template (SeparatorStyle.LLAMA2).

    The system text holds the whole ``<s>[INST] <<SYS>>...`` header, so a custom
    system prompt yields custom text + first user message + ``[/INST]`` — a quirk
    of the reference implementation that we reproduce on purpose.
    """
    system = LLAMA2_DEFAULT_SYSTEM if conv.system is None else conv.system
    roles = ("[INST]", "[/INST]")
    seps = (" ", " </s><s>")
    out = ""
    turns = list(conv.turns) + [{"role": "assistant", "content": ""}]
    for i, turn in enumerate(turns):
        message = turn["content"]
        if message:
            out += system + message if i == 0 else roles[i % 2] + " " + message + seps[i % 2]
        else:
            out += roles[i % 2]
    return out


def render_vicuna(conv: Conversation) -> str:
    """DecodingTrust's ``vicuna_v1.1`` template (SeparatorStyle.ADD_COLON_TWO)."""
    system = VICUNA_DEFAULT_SYSTEM if conv.system is None else conv.system
    roles = ("USER", "ASSISTANT")
    seps = (" ", "</s>")
    out = system + seps[0]
    turns = list(conv.turns) + [{"role": "assistant", "content": ""}]
    for i, turn in enumerate(turns):
        message = turn["content"]
        out += f"{roles[i % 2]}: {message}{seps[i % 2]}" if message else f"{roles[i % 2]}:"
    return out


def render_raw(conv: Conversation) -> str:
    """Plain text for a model without a chat template, laid out as HELM's generation adapter does.

    System text (HELM's instructions) and a blank line; each user turn, then the answer cue
    ``Answer:`` on its own line where an answer follows; an assistant turn (a few-shot
    demonstration's label) follows its cue after one space and ends with a blank line; the prompt
    ends with the cue, so the model's first token carries the space (as lm-eval's ``Answer:``).
    """
    out = conv.system + "\n\n" if conv.system else ""
    for i, turn in enumerate(conv.turns):
        following = conv.turns[i + 1]["role"] if i + 1 < len(conv.turns) else "assistant"
        if turn["role"] == "user":
            out += turn["content"] + ("\n" if following == "assistant" else "\n\n")
        else:
            out += f"{RAW_ANSWER_CUE} {turn['content']}\n\n"
    return out + RAW_ANSWER_CUE


def fold_system(conv: Conversation) -> list[Message]:
    """Messages without a system role: its text opens the first user turn (a user turn if none leads)."""
    turns = list(conv.turns)
    if conv.system is None:
        return turns
    if turns and turns[0]["role"] == "user":
        return [{"role": "user", "content": conv.system + SYSTEM_FOLD_SEPARATOR + turns[0]["content"]}] + turns[1:]
    return [{"role": "user", "content": conv.system}] + turns


_warned: set[str] = set()


def choose_template(template: str, tokenizer: object) -> tuple[str, str | None]:
    """(template to render with, warning or None): "model" on a tokenizer without a template becomes "raw".

    The returned name is the one that enters backend fingerprints, so cached texts of an automatic
    raw choice are keyed as "raw", never as a model template.  The warning is printed once per process.
    """
    check_template(template)
    if template != "model" or getattr(tokenizer, "chat_template", None):
        return template, None
    if NO_TEMPLATE_WARNING not in _warned:
        _warned.add(NO_TEMPLATE_WARNING)
        print(f"warning: {NO_TEMPLATE_WARNING}", file=sys.stderr)
    return "raw", NO_TEMPLATE_WARNING


def check_template(template: str) -> str:
    """``template`` if comptrust knows it, else a one-line ConfigError listing the choices."""
    if template not in TEMPLATES:
        raise ConfigError(f"unknown chat template {template!r}", f"choose one of: {', '.join(TEMPLATES)}")
    return template


def render(messages: Sequence[Message], template: str, tokenizer=None) -> str:
    """The prompt text for ``messages`` under ``template`` ("model" uses the tokenizer's template)."""
    conv = collapse(messages)
    if template == "llama-2":
        return render_llama2(conv)
    if template == "vicuna_v1.1":
        return render_vicuna(conv)
    if template == "raw":
        return render_raw(conv)
    check_template(template)
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise ConfigError("this model has no chat template",
                          "pass --chat-template raw (plain text, docs/prompts.md), llama-2 or vicuna_v1.1")
    from jinja2.exceptions import TemplateError

    msgs = ([{"role": "system", "content": conv.system}] if conv.system is not None else []) + list(conv.turns)
    try:
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    except TemplateError as exc:
        if conv.system is None:
            raise ConfigError(f"the model's chat template refuses these messages ({exc})",
                              "pass --chat-template raw, llama-2 or vicuna_v1.1") from exc
    # A template that rejects the system role (Gemma 1/2's raise_exception): fold it into the first user turn.
    try:
        return tokenizer.apply_chat_template(fold_system(conv), add_generation_prompt=True, tokenize=False)
    except TemplateError as exc:
        raise ConfigError(f"the model's chat template refuses these messages ({exc})",
                          "pass --chat-template raw, llama-2 or vicuna_v1.1") from exc


def prompt_token_ids(prompt: str, template: str, tokenizer) -> list[int]:
    """Token ids of a rendered prompt, the same for every local backend (hf, vllm).

    Model chat templates already contain every special token; DecodingTrust's templates and raw
    rely on the tokenizer's BOS unless the text starts with it (llama-2's "<s>[INST]").
    """
    bos = tokenizer.bos_token
    add_special = template != "model" and not (bos and prompt.startswith(bos))
    return tokenizer(prompt, add_special_tokens=add_special)["input_ids"]
