"""Turn a request's prompt (text or token ids) or chat messages into token ids."""

from __future__ import annotations

from typing import Any

from lmops_runtime.protocol import GenerateRequest, InvalidRequestError

#: For tokenizers without a chat template: role-prefixed turns and an open assistant turn to continue.
DEFAULT_CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}: {{ message['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def prompt_token_ids(tokenizer: Any, request: GenerateRequest, vocab_size: int) -> list[int]:
    """Token ids of the prompt; chat messages go through the tokenizer's template (or the default one)."""
    if (request.prompt is None) == (request.messages is None):
        raise InvalidRequestError("give exactly one of prompt and messages")
    if isinstance(request.prompt, list):
        outside = [token for token in request.prompt if not 0 <= token < vocab_size]
        if outside:
            raise InvalidRequestError(
                f"the prompt holds token {outside[0]}, outside this model's vocabulary of {vocab_size}"
            )
        return list(request.prompt)
    if request.prompt is not None:
        return list(tokenizer(request.prompt)["input_ids"])
    messages = [message.model_dump() for message in request.messages or []]
    if not messages:
        raise InvalidRequestError("messages must not be empty")
    template = tokenizer.chat_template or DEFAULT_CHAT_TEMPLATE
    text = tokenizer.apply_chat_template(
        messages, chat_template=template, tokenize=False, add_generation_prompt=True
    )
    # The template already writes any special tokens the model expects, so none are added again.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])
