#!/usr/bin/python3
"""The classic asyncio data pipeline: aiohttp + asyncio.gather with a
connection limit. Fetches every URL in URLS_FILE once, parses each body with
json.loads and writes one JSON Lines record per URL to OUT_FILE, in the same
shape as fetchd's records.

usage: aiohttp_fetch.py URLS_FILE CONCURRENCY OUT_FILE
"""
import asyncio
import datetime
import json
import sys
import time

import aiohttp


async def main(urls, concurrency, out):
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=30)
    sem = asyncio.Semaphore(concurrency)
    ok = 0

    async with aiohttp.ClientSession(connector=connector, timeout=timeout,
                                     trust_env=False) as session:
        async def one(url):
            nonlocal ok
            async with sem:
                t0 = time.monotonic()
                at = datetime.datetime.now(datetime.timezone.utc).isoformat()
                try:
                    async with session.get(url) as resp:
                        body = await resp.read()
                        rec = {"url": url, "ok": resp.status == 200, "status": resp.status,
                               "fetched_at": at,
                               "duration_ms": (time.monotonic() - t0) * 1000,
                               "bytes": len(body), "data": json.loads(body)}
                        ok += rec["ok"]
                except Exception as e:  # noqa: BLE001 - a record, like fetchd
                    rec = {"url": url, "ok": False, "error": repr(e)}
                out.write(json.dumps(rec, separators=(",", ":")) + "\n")

        await asyncio.gather(*(one(u) for u in urls))
    return ok


if __name__ == "__main__":
    urls = [u for u in open(sys.argv[1]).read().split("\n") if u]
    with open(sys.argv[3], "w") as f:
        n = asyncio.run(main(urls, int(sys.argv[2]), f))
    sys.exit(0 if n == len(urls) else 1)
