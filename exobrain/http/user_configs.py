"""``/api/users/me/configs``: the signed-in user's settings, as the newest reference
frontend reads and saves them (its theme among them)."""

from __future__ import annotations

from typing import Annotated, Literal

from aiohttp import web
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    model_validator,
)
from typing_extensions import TypedDict

from exobrain.auth import Principal
from exobrain.store.user_configs import (
    InvalidConfigUpdate,
    UserConfig,
    update_user_configs,
    user_configs,
)

from .auth.authentication import authenticated
from .contract import USER, Reply, operation
from .errors import JsonError, json_response
from .resources import PG_POOL
from .validation import Text, parse_body

routes = web.RouteTableDef()


def _kind(value: object) -> str:
    return "str" if isinstance(value, str) else "bool"


class ConfigUpdate(BaseModel):
    key: Text
    #: Errors name the branch by the value's kind: ``[..., "value", "bool"]`` or ``"str"``.
    value: Annotated[
        Annotated[StrictBool, Tag("bool")] | Annotated[Text, Tag("str")], Discriminator(_kind)
    ]


class ConfigsPatch(BaseModel):
    """Exactly one of ``update`` and ``updates`` (null counts as absent)."""

    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": ["update"], "properties": {"update": {"type": "object"}}},
                {"required": ["updates"], "properties": {"updates": {"type": "array"}}},
            ],
            # A setting every database has (migration 0007).
            "examples": [{"update": {"key": "frontend.theme", "value": "purple-intelligence"}}],
        }
    )

    update: ConfigUpdate | None = None
    updates: list[ConfigUpdate] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def one_form(self) -> ConfigsPatch:
        if (self.update is None) == (self.updates is None):
            raise ValueError("send either update or updates")
        return self

    def changes(self) -> dict[str, bool | str]:
        """Key to value; a key sent twice takes its last value."""
        sent = self.updates or ([self.update] if self.update else [])
        return {change.key: change.value for change in sent}


class Option(TypedDict):
    value: str
    label: str


class Config(TypedDict):
    """One setting: what it is, the values it takes, the user's value and the default."""

    key: str
    name: str
    config_type: Literal["boolean", "choice"]
    description: str
    options: list[Option]
    value: bool | str
    default_value: bool | str
    using_default: bool


class Configs(TypedDict):
    configs: list[Config]


CONFIGS = Reply("Every setting, in display order.", Configs)


@routes.get("/api/users/me/configs")
@operation(security=USER, outage=True, responses={200: CONFIGS})
@authenticated
async def get_configs(request: web.Request, principal: Principal) -> web.Response:
    """The signed-in user's settings.

    `{configs: [{key, name, config_type: "boolean"|"choice", description, options: [{value,
    label}], value, default_value, using_default}]}`, in display order.
    """
    return _answer(await user_configs(request.app[PG_POOL], principal.user_id))


@routes.patch("/api/users/me/configs")
@operation(
    body=ConfigsPatch,
    security=USER,
    outage=True,
    responses={
        200: CONFIGS,
        400: Reply("A key names no setting, or a value is not one the setting takes."),
    },
)
@authenticated
async def patch_configs(request: web.Request, principal: Principal) -> web.Response:
    """Change settings: `{update: {key, value}}` or `{updates: [{key, value}, ...]}`.

    All updates apply or none; the answer is the full set, as GET gives it. Choosing a
    setting's default drops the user's override. 400 naming the key when it is unknown
    or its value is not one the setting takes.
    """
    body = await parse_body(request, ConfigsPatch)
    try:
        configs = await update_user_configs(request.app[PG_POOL], principal.user_id, body.changes())
    except InvalidConfigUpdate as exc:
        raise JsonError(400, f"invalid config update: {exc}") from None
    return _answer(configs)


def _answer(configs: list[UserConfig]) -> web.Response:
    return json_response({"configs": [config.as_json() for config in configs]})
