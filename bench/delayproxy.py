"""A TCP proxy that holds every chunk a client sends for D ms before passing it upstream: what
real SQS's distance adds to each call, for a host in a network namespace whose SQS stand-in
listens in another (the kernel here has no netem qdisc to delay the link itself). Answers come
back at once, so each HTTP call pays D once. Its own process, run inside the host's namespace:

    python bench/delayproxy.py --port P --upstream HOST:PORT --delay-ms 5
"""

from __future__ import annotations

import argparse
import asyncio

CHUNK = 65536


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
               delay: float) -> None:
    try:
        while data := await reader.read(CHUNK):
            if delay:
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def main(port: int, upstream: str, delay: float) -> None:
    host, _, upstream_port = upstream.rpartition(":")

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection(host, int(upstream_port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, up_w, delay), pipe(up_r, client_w, 0.0))

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=256)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="HOST:PORT")
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.upstream, args.delay_ms / 1000))
