"""The shoppers' phones of ``bench/bench_live.py`` (a subprocess): one real WebSocket client per account on
``/ws/shopper/``, every message written with its receive time."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path


def clients(sessions_file: str, port: str, out: str, max_s: str) -> None:
    """Subprocess: one WebSocket per account on ``/ws/shopper/`` (session cookie, Origin), every message written
    with its receive time as ``[t, account, message]`` lines to ``out``; stops on SIGTERM or after ``max_s``."""
    import asyncio

    import aiohttp

    sessions = json.loads(Path(sessions_file).read_text())
    url = f"ws://127.0.0.1:{port}/ws/shopper/"
    origin = f"http://127.0.0.1:{port}"
    stop = asyncio.Event()
    stats = {"connected": 0, "reconnects": 0, "failed": 0}

    async def one(http, email: str, sid: str, fh, ready: asyncio.Event) -> None:
        tries = 0
        first = True
        while not stop.is_set() and tries < 20:
            tries += 1
            try:
                async with http.ws_connect(url, headers={"Cookie": f"sessionid={sid}", "Origin": origin},
                                           max_msg_size=0, autoclose=True, autoping=True) as ws:
                    if first:
                        stats["connected"] += 1
                        first = False
                        if stats["connected"] == len(sessions):
                            ready.set()
                    else:
                        stats["reconnects"] += 1
                    async for msg in ws:
                        t = time.time()
                        if msg.type == aiohttp.WSMsgType.TEXT:
                            fh.write(json.dumps([t, email, json.loads(msg.data)]) + "\n")
                        elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                            break
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                await asyncio.sleep(0.5)
            if not stop.is_set():
                await asyncio.sleep(0.2)
        if first:
            stats["failed"] += 1

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        ready = asyncio.Event()
        with open(out, "w", buffering=1 << 16) as fh:
            conn = aiohttp.TCPConnector(limit=0)
            async with aiohttp.ClientSession(connector=conn) as http:
                tasks = []
                for email, sid in sessions.items():
                    tasks.append(asyncio.create_task(one(http, email, sid, fh, ready)))
                    await asyncio.sleep(0.01)  # a few hundred phones opening the app, not one burst
                try:
                    await asyncio.wait_for(ready.wait(), 90)
                except asyncio.TimeoutError:
                    pass
                print(f"connected {stats['connected']}/{len(sessions)} shopper WebSockets", flush=True)
                try:
                    await asyncio.wait_for(stop.wait(), float(max_s))
                except asyncio.TimeoutError:
                    pass
                stop.set()
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
        print(f"closed: {stats}", flush=True)

    asyncio.run(main())
