"""Serving an ASGI app with uvicorn on a socket we bind ourselves (port 0 picks a free one)."""

from __future__ import annotations

import socket
from typing import Any, Literal

__all__ = ["serve_asgi"]


def serve_asgi(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    announce: bool = False,
    lifespan: Literal["auto", "on", "off"] = "on",
) -> None:
    """Serve ``app`` until interrupted. With ``announce``, print the bound port first (one line
    on stdout), so a parent process can start us on port 0 and learn the port."""
    import uvicorn

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP matters: asyncio turns Nagle off (TCP_NODELAY) only on sockets whose
    # proto says TCP, and accepted sockets inherit it from this one. With proto 0, every
    # response (headers and body are two writes) waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(512)
        if announce:
            print(sock.getsockname()[1], flush=True)
        config = uvicorn.Config(app, log_level="warning", lifespan=lifespan, access_log=False)
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        sock.close()
