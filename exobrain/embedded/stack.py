"""Start an embedded server for each dependency that has no URL configured."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from pydantic import AnyUrl

from exobrain.config import Settings

from .servers import EmbeddedNats, EmbeddedPostgres, EmbeddedRedis

log = logging.getLogger(__name__)

#: The database `exobrain dev` keeps its data in, inside the embedded cluster.
DEV_DATABASE = "exobrain"


@contextlib.contextmanager
def embedded_stack(settings: Settings) -> Iterator[Settings]:
    """Yield ``settings`` with embedded PostgreSQL, Redis and NATS filling the gaps.

    Servers live under ``EXOBRAIN_STATE_DIR`` and stop, in reverse order, when
    the context exits.
    """
    state = settings.exobrain_state_dir
    urls: dict[str, AnyUrl] = {}
    with contextlib.ExitStack() as servers:
        if settings.assistant_db_dsn is None:
            postgres = servers.enter_context(EmbeddedPostgres(state / "postgres"))
            postgres.create_database(DEV_DATABASE)
            urls["assistant_db_dsn"] = AnyUrl(postgres.url_for(DEV_DATABASE))
        if settings.assistant_cache_redis_url is None:
            redis = servers.enter_context(EmbeddedRedis(state / "redis"))
            urls["assistant_cache_redis_url"] = AnyUrl(redis.url)
        if settings.exobrain_nats_url is None:
            nats = servers.enter_context(EmbeddedNats(state / "nats"))
            urls["exobrain_nats_url"] = AnyUrl(nats.url)
        for name in ("assistant_db_dsn", "assistant_cache_redis_url", "exobrain_nats_url"):
            if name not in urls:
                log.info("using configured %s", name.upper())
        yield settings.model_copy(update=urls)
