"""websockets' asyncio server, the fastest pure-Python reference; broadcast() for fan-out."""

import argparse
import asyncio

from websockets import broadcast
from websockets.asyncio.server import serve

listeners = set()


async def handler(ws):
    if ws.request.path == "/broadcast":
        listeners.add(ws)
        try:
            async for message in ws:
                broadcast(listeners - {ws}, message)
        finally:
            listeners.discard(ws)
    else:
        async for message in ws:
            await ws.send(message)


async def main(port):
    async with serve(handler, "127.0.0.1", port, compression=None, max_size=None) as server:
        print(f"listening on ws://127.0.0.1:{port}", flush=True)
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(main(parser.parse_args().port))
