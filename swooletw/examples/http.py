# -*- test-case-name: tests.test_examples -*-
"""
Tutorial §15: the HTTP server.  Every request is answered C{hello world.}
with status 200; the request (fd, header, server, data) is logged, as the
tutorial's C{print_r($request)} shows it.

    twistd -ny tap/http.tac
    twistd -n swoole-tcp --app swooletw.examples.http:makeServer

The tutorial puts nginx in front (static files from its C{root},
everything else C{proxy_pass}ed here): see README.rst, "Behind nginx".
"""

from __future__ import annotations

from twisted.logger import Logger

from swooletw.http import HttpRequest, HttpResponse, HttpServer

log = Logger(namespace="swooletw.examples.http")


def onRequest(request: HttpRequest, response: HttpResponse) -> None:
    """Answer C{hello world.} (PHP: C{$response->status(200); $response->end(...)})."""
    log.info(
        "fd {fd} header {header} server {server}",
        fd=request.fd,
        header=request.header,
        server=request.server,
    )
    response.status(200)
    response.end("hello world.")


def makeServer(host: str = "127.0.0.1", port: int = 8000) -> HttpServer:
    """
    The §15 server on the tutorial's port 8000.
    """
    http = HttpServer(host, port)
    http.set({"worker_num": 1})
    http.on("request", onRequest)
    return http
