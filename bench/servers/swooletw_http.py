"""swooletw hello world over HTTP: swooletw.HttpServer in BASE mode, worker_num 1
(one process serving), the request callback answering "Hello World", exactly
the API issue 8 specifies:

    serv = swooletw.HttpServer(host, port, swooletw.BASE)
    serv.set({"worker_num": 1})
    serv.on("request", lambda request, response: response.end("Hello World"))
    serv.start()

--mode process runs Swoole's default mode instead (a master supervising the
worker; run_http.py sums the CPU of the whole tree). --workers N sets worker_num.

Needs swooletw importable (PYTHONPATH=<repo root> or installed).
Usage: python3 swooletw_http.py --host 127.0.0.1 --port N
Prints "ready" just before start() (run_http.py waits for the port to answer).
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--mode", choices=("base", "process"), default="base")
    ap.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()

    import swooletw

    print(f"swooletw from {swooletw.__file__}", file=sys.stderr, flush=True)
    serv = swooletw.HttpServer(args.host, args.port, getattr(swooletw, args.mode.upper()))
    serv.set({"worker_num": args.workers})
    serv.on("request", lambda request, response: response.end("Hello World"))
    print("ready", flush=True)
    serv.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
