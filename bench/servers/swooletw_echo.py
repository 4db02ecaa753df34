"""swooletw echo server: the receive callback sends the packet straight back.

--framing eof:    open_eof_split with package_eof "\\r\\n"
--framing length: open_length_check, package_length_type "N" (4-byte
                  big-endian body length), body offset 4
--workers N:      worker_num (default 1)
--mode process|base:
                  Swoole's third constructor argument (default process, as
                  Swoole's). PROCESS: a master supervises the workers, even
                  one (since 1ba3927; before it worker_num 1 was one process
                  in either mode). BASE with worker_num 1: one process
--reload-async true|false:
                  reload_async (default: the setting's default, true): on
                  SIGUSR1 to the master, replace every worker at once (true) or
                  one at a time (false)

Needs swooletw importable (PYTHONPATH=<repo root> or installed).
Server.start() blocks and runs the default reactor (epoll on Linux).
"""
import argparse
import sys


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--framing", choices=("eof", "length"), default="eof")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--reload-async", choices=("true", "false"), default=None)
    ap.add_argument("--mode", choices=("process", "base"), default="process")
    args = ap.parse_args()

    import swooletw

    # which tree is serving (run_echo.py --baseline-tree runs another one): in the row's log
    print(f"swooletw from {swooletw.__file__}", file=sys.stderr, flush=True)
    serv = swooletw.Server("127.0.0.1", args.port, getattr(swooletw, args.mode.upper()))
    if args.framing == "eof":
        serv.set({
            "worker_num": args.workers,
            "open_eof_split": True,
            "package_eof": "\r\n",
            "package_max_length": 1 << 20,
        })
    else:
        serv.set({
            "worker_num": args.workers,
            "open_length_check": True,
            "package_length_type": "N",
            "package_length_offset": 0,
            "package_body_offset": 4,
            "package_max_length": 1 << 20,
        })
    if args.reload_async is not None:
        serv.set({"reload_async": args.reload_async == "true"})
    serv.on("receive", lambda s, fd, reactor_id, data: s.send(fd, data))
    print("ready", flush=True)
    serv.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
