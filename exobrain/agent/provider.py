"""The OpenAI-compatible model provider (``MODEL_PROVIDER_BASE_URL``), streamed as pieces.

Imported only when the mock agent is off: the openai client costs 13 MB of memory or more.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pydantic

from .model import ModelError, Piece, ToolCallDelta


@dataclass
class OpenAIModel:
    """Any OpenAI-compatible chat completions endpoint, streamed."""

    client: openai.AsyncOpenAI
    name: str
    temperature: float

    async def stream(
        self, messages: Sequence[dict[str, Any]], tools: Sequence[dict[str, Any]]
    ) -> AsyncIterator[Piece]:
        try:
            chunks = await self.client.chat.completions.create(  # type: ignore[call-overload]
                model=self.name,
                messages=list(messages),
                tools=list(tools) or openai.omit,
                temperature=self.temperature,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in chunks:
                yield _piece(chunk)
        except openai.APITimeoutError:
            raise ModelError("the model provider did not answer in time") from None
        except openai.APIConnectionError:
            raise ModelError("the model provider is unreachable") from None
        except openai.APIStatusError as exc:
            raise ModelError(
                f"the model provider refused the request ({exc.status_code}: {_reason(exc)})"
            ) from None
        except (pydantic.ValidationError, ValueError, httpx.HTTPError) as exc:
            raise ModelError(f"the model provider sent a malformed stream ({exc})") from None


def _piece(chunk: Any) -> Piece:
    usage = None
    if chunk.usage is not None:
        usage = {
            "prompt_tokens": chunk.usage.prompt_tokens,
            "completion_tokens": chunk.usage.completion_tokens,
            "total_tokens": chunk.usage.total_tokens,
        }
    if not chunk.choices:
        return Piece(usage=usage)
    choice = chunk.choices[0]
    delta = choice.delta
    calls = tuple(
        ToolCallDelta(
            index=call.index,
            id=call.id,
            name=call.function.name if call.function else None,
            arguments=(call.function.arguments or "") if call.function else "",
        )
        for call in delta.tool_calls or ()
    )
    return Piece(
        text=delta.content or "",
        tool_calls=calls,
        finish_reason=choice.finish_reason,
        usage=usage,
    )


def _reason(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return exc.message
