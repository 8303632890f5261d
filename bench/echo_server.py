"""A bare aiohttp WebSocket echo server on uvloop: the ceiling ``ws-echo`` measures.

python -m bench.echo_server PORT
"""

from __future__ import annotations

import sys

import uvloop
from aiohttp import WSMsgType, web


async def echo(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    async for message in ws:
        if message.type is WSMsgType.TEXT:
            await ws.send_str(message.data)
    return ws


def main() -> None:
    app = web.Application()
    app.router.add_get("/", echo)
    web.run_app(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        print=None,
        access_log=None,
        loop=uvloop.new_event_loop(),
    )


if __name__ == "__main__":
    main()
