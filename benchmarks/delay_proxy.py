"""A TCP proxy that holds every byte for half a round trip each way: a relay that far away, on loopback.

    .venv/bin/python benchmarks/delay_proxy.py LISTEN_PORT TARGET_PORT RTT_MS

`send.py --relay-rtt-ms` puts it in front of `smtp-sink` for both contenders. The kernel's own delay (netem) is
not available in every sandbox; this adds the delay in user space, in order, with no limit on bandwidth. Each
direction of each connection is one queue of (due time, bytes), written out in order once due.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections import deque


async def _carry(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, one_way: float) -> None:
    loop = asyncio.get_running_loop()
    held: deque[tuple[float, bytes]] = deque()
    arrived = asyncio.Event()
    ended = False

    async def deliver() -> None:
        while held or not ended:
            if not held:
                arrived.clear()
                await arrived.wait()
                continue
            due, data = held[0]
            if (wait := due - loop.time()) > 0:
                await asyncio.sleep(wait)
            held.popleft()
            writer.write(data)
            await writer.drain()
        writer.close()

    delivering = asyncio.create_task(deliver())
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(1 << 16):
            held.append((loop.time() + one_way, data))
            arrived.set()
    ended = True
    arrived.set()
    with contextlib.suppress(ConnectionError):
        await delivering


async def serve(listen_port: int, target_port: int, rtt: float) -> None:
    async def connection(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        server_reader, server_writer = await asyncio.open_connection("127.0.0.1", target_port)
        await asyncio.gather(
            _carry(client_reader, server_writer, rtt / 2), _carry(server_reader, client_writer, rtt / 2)
        )

    server = await asyncio.start_server(connection, "127.0.0.1", listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    import uvloop

    uvloop.run(serve(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]) / 1000))
