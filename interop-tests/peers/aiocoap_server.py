"""aiocoap peer for the interop tests (interop-tests/tests/coap_aiocoap.rs).

Resources:
  /small    GET: a short text payload.
  /large    GET: LARGE_SIZE bytes of a fixed pattern (needs Block2).
  /sink     PUT: answers 2.04 with "<size> <sha256 hex>" of the body it got
            (reassembled by aiocoap from Block1); GET returns the last body.
  /counter  GET, observable: "<n>", incremented and notified every
            COUNTER_PERIOD seconds.

Usage: python aiocoap_server.py PORT LIFETIME_SECONDS
Binds 127.0.0.1:PORT, prints "ready" once serving, and exits after LIFETIME
seconds or when its standard input closes (the test that started it died),
whichever comes first.
"""

import asyncio
import hashlib
import sys

import aiocoap
import aiocoap.resource as resource

LARGE_SIZE = 20 * 1024
COUNTER_PERIOD = 0.2


def large_body():
    # Same formula as interop-tests/tests/coap_aiocoap.rs::large_body: not
    # periodic at any block size, so a misplaced block is caught.
    return bytes(((i * 7) + (i >> 8)) & 0xFF for i in range(LARGE_SIZE))


class Small(resource.Resource):
    async def render_get(self, request):
        return aiocoap.Message(payload=b"hello from aiocoap", content_format=0)


class Large(resource.Resource):
    def __init__(self):
        super().__init__()
        self.body = large_body()

    async def render_get(self, request):
        return aiocoap.Message(payload=self.body, content_format=42)


class Sink(resource.Resource):
    def __init__(self):
        super().__init__()
        self.body = b""

    async def render_put(self, request):
        self.body = request.payload
        digest = hashlib.sha256(self.body).hexdigest()
        text = "%d %s" % (len(self.body), digest)
        return aiocoap.Message(code=aiocoap.CHANGED, payload=text.encode())

    async def render_get(self, request):
        return aiocoap.Message(payload=self.body, content_format=42)


class Counter(resource.ObservableResource):
    def __init__(self):
        super().__init__()
        self.n = 0

    async def tick(self):
        while True:
            await asyncio.sleep(COUNTER_PERIOD)
            self.n += 1
            self.updated_state()

    async def render_get(self, request):
        return aiocoap.Message(payload=str(self.n).encode(), content_format=0)


async def wait_stdin_closed():
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.buffer.read)


async def main(port, lifetime):
    root = resource.Site()
    root.add_resource([".well-known", "core"], resource.WKCResource(root.get_resources_as_linkheader))
    root.add_resource(["small"], Small())
    root.add_resource(["large"], Large())
    root.add_resource(["sink"], Sink())
    counter = Counter()
    root.add_resource(["counter"], counter)
    context = await aiocoap.Context.create_server_context(root, bind=("127.0.0.1", port))
    ticker = asyncio.create_task(counter.tick())
    print("ready", flush=True)
    stdin_closed = asyncio.create_task(wait_stdin_closed())
    try:
        await asyncio.wait_for(stdin_closed, timeout=lifetime)
    except asyncio.TimeoutError:
        pass
    ticker.cancel()
    await context.shutdown()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
