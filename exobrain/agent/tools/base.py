"""What a tool is: a name, bounded arguments, how it announces itself, and a coroutine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

Args = TypeVar("Args", bound=BaseModel)


class ToolError(Exception):
    """A tool failed; its message goes to the user (an ``error`` event) and to the model."""


@dataclass(frozen=True, slots=True)
class ToolResult:
    #: What the model reads (JSON text).
    content: str
    #: The ``tool_response`` message the user sees.
    summary: str


class Tool(Generic[Args]):
    """A function tool. Subclasses set the class attributes and implement two methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    arguments: type[Args]

    def parse(self, raw: str) -> Args:
        try:
            return self.arguments.model_validate_json(raw or "{}")
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()
            )
            raise ToolError(f"invalid arguments for {self.name}: {problems}") from None

    def announce(self, arguments: Args) -> tuple[str, str]:
        """The ``tool_call`` event's title and description."""
        raise NotImplementedError

    async def run(self, arguments: Args) -> ToolResult:
        raise NotImplementedError

    def spec(self) -> dict[str, Any]:
        """The OpenAI function-tool declaration (every turn sends it; built once a class:
        pydantic takes ~225 µs to write a schema)."""
        spec = _SPECS.get(type(self))
        if spec is None:
            spec = _SPECS[type(self)] = {
                "type": "function",
                "function": {
                    "name": self.name,
                    "description": self.description,
                    "parameters": self.arguments.model_json_schema(),
                },
            }
        return spec


#: Each tool class's declaration, written once.
_SPECS: dict[type[Any], dict[str, Any]] = {}
