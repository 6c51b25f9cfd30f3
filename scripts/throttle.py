#!/usr/bin/env python3
"""A TCP relay on 127.0.0.1 that limits the bytes it forwards from TARGET to clients to RATE
MiB/s in all (one shared token bucket), to stand in for an upstream registry on the other side
of a WAN link in benchmarks. Requests (client to target) pass unthrottled.

Usage: throttle.py LISTEN_PORT TARGET_HOST:PORT RATE_MIB_S
Prints "throttle listening on 127.0.0.1:PORT" once it accepts connections.
"""
import asyncio
import sys
import time

CHUNK = 64 * 1024


class Bucket:
    """Tokens are bytes; they refill at `rate` per second up to a burst of 1/20 s."""

    def __init__(self, rate):
        self.rate = rate
        self.burst = max(CHUNK, rate / 20)
        self.tokens = self.burst
        self.stamp = time.monotonic()
        self.lock = asyncio.Lock()

    async def take(self, n):
        async with self.lock:
            while True:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= n:
                    self.tokens -= n
                    return
                await asyncio.sleep((n - self.tokens) / self.rate)


async def pipe(reader, writer, bucket=None):
    try:
        while data := await reader.read(CHUNK):
            if bucket:
                await bucket.take(len(data))
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def main():
    port, target, rate = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    host, tport = target.rsplit(":", 1)
    bucket = Bucket(rate * 1024 * 1024)

    async def handle(client_reader, client_writer):
        try:
            up_reader, up_writer = await asyncio.open_connection(host, int(tport))
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            pipe(client_reader, up_writer),
            pipe(up_reader, client_writer, bucket),
        )

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print(f"throttle listening on 127.0.0.1:{port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main())
