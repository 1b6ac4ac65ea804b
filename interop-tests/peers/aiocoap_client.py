"""aiocoap client peer for the interop tests (interop-tests/tests/coap_aiocoap.rs).

  python aiocoap_client.py get URL [SZX]       -> "<code> <size> <sha256 hex>"
  python aiocoap_client.py put URL FILE [SZX]  -> "<code> <response payload>"
  python aiocoap_client.py observe URL N       -> "<code> <payload>" for the
                                                  first response and each of N
                                                  notifications, then cancels.

SZX (0..6) is a block size of 16 << SZX bytes: for get, asked for in the
first request's Block2; for put, the largest Block1 size aiocoap uses.
Block-wise transfers are otherwise done by aiocoap itself. Always exits within TIMEOUT seconds.
"""

import asyncio
import hashlib
import sys

import aiocoap
from aiocoap.optiontypes import BlockOption

TIMEOUT = 15


async def run(argv):
    context = await aiocoap.Context.create_client_context()
    try:
        cmd, url = argv[0], argv[1]
        if cmd == "get":
            request = aiocoap.Message(code=aiocoap.GET, uri=url)
            if len(argv) > 2:
                # Early negotiation (RFC 7959 2.4): ask for that size up front.
                szx = int(argv[2])
                request.opt.block2 = BlockOption.BlockwiseTuple(0, False, szx)
            response = await context.request(request).response
            digest = hashlib.sha256(response.payload).hexdigest()
            print(response.code.dotted, len(response.payload), digest, flush=True)
        elif cmd == "put":
            with open(argv[2], "rb") as f:
                body = f.read()
            request = aiocoap.Message(code=aiocoap.PUT, uri=url, payload=body)
            if len(argv) > 3:
                request.remote.maximum_block_size_exp = int(argv[3])
            response = await context.request(request).response
            print(response.code.dotted, response.payload.decode(errors="replace"), flush=True)
        elif cmd == "observe":
            wanted = int(argv[2])
            request = aiocoap.Message(code=aiocoap.GET, uri=url, observe=0)
            requester = context.request(request)
            response = await requester.response
            print(response.code.dotted, response.payload.decode(errors="replace"), flush=True)
            seen = 0
            async for notification in requester.observation:
                print(notification.code.dotted, notification.payload.decode(errors="replace"), flush=True)
                seen += 1
                if seen >= wanted:
                    break
            requester.observation.cancel()
            # Give the deregistration (if any) a moment to go out.
            await asyncio.sleep(0.2)
        else:
            raise SystemExit("unknown command %r" % cmd)
    finally:
        await context.shutdown()


if __name__ == "__main__":
    asyncio.run(asyncio.wait_for(run(sys.argv[1:]), TIMEOUT))
