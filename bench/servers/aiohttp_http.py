"""aiohttp hello world: one route answering "Hello World" (text/plain).

aiohttp's web server (its C HTTP parser when the wheel has it) on the default
asyncio event loop (selector over epoll), access log off, one process.
--uvloop runs it on uvloop instead (not used by run_http.py's default rows).

Usage: python3 aiohttp_http.py --host 127.0.0.1 --port N [--uvloop]
Prints "ready" once listening.
"""
import argparse
import asyncio
import sys

from aiohttp import web


async def hello(request):
    return web.Response(text="Hello World")


async def serve(host, port):
    app = web.Application()
    app.router.add_get("/", hello)
    app.router.add_get("/{tail:.*}", hello)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    print("ready", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--uvloop", action="store_true")
    args = ap.parse_args()
    if args.uvloop:
        import uvloop
        uvloop.install()
    import signal
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    try:
        asyncio.run(serve(args.host, args.port))
    except (KeyboardInterrupt, SystemExit):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
