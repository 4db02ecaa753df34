"""swooletw task server: accept fast, work later (the tutorial's mail server, minus the mail).

EOF framing ("\\r\\n"). For every packet the receive callback calls
serv.task(packet) and replies with one line: the task id ("12345\\r\\n"),
at once, or with --store once serv.taskStored(task_id) fired (the task is
in the journal; the ids confirmed together are sent together, one send per
connection), or "refused\\r\\n" when task() returned False
(task_queue_max tasks already waiting). The task handler does nothing but
return its data, so what is measured is the task machinery; the finish
callback counts the finished tasks.

Counters: --counters PATH is a file of 64-byte slots, one per worker id
(slot i at offset 64*i), native uint64: accepted, refused, finished,
failed, then the worker process's garbage collector: total ns spent in
collections, longest collection in ns, number of generation-2 collections
(a gc.callbacks hook; everything in the process, task threads included,
waits while it runs). The file is mapped (MAP_SHARED) before start(), so every forked
worker shares the mapping; each worker writes only its own slot, from its
reactor thread, so there is one writer per slot, and a reader (the runner)
can map the same file and read all counters at any moment without
disturbing the server.

A packet "STATS\\r\\n" is answered with one line: serv.stats() as JSON (the
worker that holds the connection; other workers as of their last ping).

Options:
  --workers N              worker_num (default 1)
  --task-workers N         task_worker_num (default 2)
  --mode thread|process    task_worker_mode (default thread)
  --store PATH             task_store "sqlite:PATH" (default: none)
  --queue-max N            task_queue_max (default: the setting's, 65536)
  --max-wait-time S        max_wait_time (default 1: a graceful stop drains the
                           task queue for at most that long; the bench does not
                           measure the stop)

Needs swooletw importable (PYTHONPATH=<repo root> or installed).
"""
import argparse
import gc
import json
import mmap
import os
import struct
import sys
import time

SLOT = 64          # bytes per worker slot: see FIELDS
MAX_WORKERS = 64
FIELDS = ("accepted", "refused", "finished", "failed", "gc_ns", "gc_max_ns", "gc2_count", "spare")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--task-workers", type=int, default=2)
    ap.add_argument("--mode", choices=("thread", "process"), default="thread")
    ap.add_argument("--store", default=None, help="SQLite journal path (task_store sqlite:PATH)")
    ap.add_argument("--queue-max", type=int, default=None)
    ap.add_argument("--max-wait-time", type=float, default=1.0)
    ap.add_argument("--counters", required=True, help="counters file (created/zeroed)")
    args = ap.parse_args()
    if not 1 <= args.workers <= MAX_WORKERS:
        ap.error(f"--workers must be 1..{MAX_WORKERS}")

    import swooletw

    with open(args.counters, "wb") as f:
        f.write(b"\0" * (SLOT * MAX_WORKERS))
    fd = os.open(args.counters, os.O_RDWR)
    shared = mmap.mmap(fd, SLOT * MAX_WORKERS, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    os.close(fd)
    pack = struct.Struct("=Q").pack_into

    settings = {
        "worker_num": args.workers,
        "task_worker_num": args.task_workers,
        "task_worker_mode": args.mode,
        "open_eof_split": True,
        "package_eof": "\r\n",
        "package_max_length": 1 << 20,
        "max_wait_time": args.max_wait_time,
    }
    if args.store:
        settings["task_store"] = "sqlite:" + args.store
    if args.queue_max:
        settings["task_queue_max"] = args.queue_max
    serv = swooletw.Server("127.0.0.1", args.port)
    serv.set(settings)

    # this worker's counters (a list, FIELDS) and slot offset, set in workerStart; a
    # replaced worker carries on from what its predecessor wrote
    state = {}

    def gc_hook(phase, info):
        if phase == "start":
            state["gc0"] = time.perf_counter_ns()
            return
        took = time.perf_counter_ns() - state.get("gc0", 0)
        c = state["c"]
        c[4] += took
        c[5] = max(c[5], took)
        if info["generation"] == 2:
            c[6] += 1
        struct.pack_into("=3Q", shared, state["base"] + 32, c[4], c[5], c[6])

    def worker_start(s, worker_id):
        if s.taskworker:
            return  # task threads / task worker processes count nothing
        base = SLOT * worker_id
        state["base"] = base
        state["c"] = list(struct.unpack_from("=8Q", shared, base))
        gc.callbacks.append(gc_hook)

    def bump(i):
        c = state["c"]
        c[i] += 1
        pack(shared, state["base"] + 8 * i, c[i])

    stats_packet = b"STATS\r\n"
    # With a journal, the task id goes back once the task is on disk (what a
    # server that promises "accepted = not lost" does); code from before
    # taskStored() wrote the journal inside task(), so it replies at once.
    stored = args.store and getattr(serv, "taskStored", None)
    # The ids that the journal confirms together go out together: one send
    # per connection per reactor turn, as the replies sent from inside the
    # receive callback are (a send outside it is one syscall each).
    later = {}

    def flush():
        for fd, parts in later.items():
            serv.send(fd, b"".join(parts))
        later.clear()

    def reply_stored(_, fd, task_id):
        bump(0)
        if not later:
            serv.reactor.callLater(0, flush)
        later.setdefault(fd, []).append(b"%d\r\n" % task_id)

    def receive(s, fd, reactor_id, data):
        if data == stats_packet:
            s.send(fd, json.dumps(s.stats(), default=str).encode() + b"\r\n")
            return
        task_id = s.task(data)
        if task_id is False:
            bump(1)
            s.send(fd, b"refused\r\n")
        elif stored:
            stored(task_id).addCallback(reply_stored, fd, task_id)
        else:
            bump(0)
            s.send(fd, b"%d\r\n" % task_id)

    def task(s, task_id, src_worker_id, data):
        return data

    def finish(s, task_id, result):
        bump(3 if hasattr(result, "getErrorMessage") else 2)  # a Failure: the task raised

    serv.on("workerStart", worker_start)
    serv.on("receive", receive)
    serv.on("task", task)
    serv.on("finish", finish)
    print("ready", flush=True)
    serv.start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
