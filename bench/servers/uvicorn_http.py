"""uvicorn hello world: a bare ASGI app answering "Hello World" (text/plain).

uvicorn with --loop uvloop --http httptools, one worker (one process: no
supervisor), access log off, log level warning. uvicorn adds its own `server`
and `date` headers.

Usage: python3 uvicorn_http.py --host 127.0.0.1 --port N
Prints "ready" just before uvicorn starts (run_http.py waits for the port).
"""
import argparse
import sys

import uvicorn

BODY = b"Hello World"
START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"11")],
}
END = {"type": "http.response.body", "body": BODY}


async def app(scope, receive, send):
    if scope["type"] != "http":  # lifespan: not used
        return
    await send(START)
    await send(END)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    print("ready", flush=True)
    uvicorn.run(app, host=args.host, port=args.port, loop="uvloop", http="httptools",
                workers=1, access_log=False, log_level="warning", lifespan="off",
                backlog=1024)
    return 0


if __name__ == "__main__":
    sys.exit(main())
