"""
The tutorial's §15 set-up: nginx in front (static files from its C{root},
everything else C{proxy_pass}ed to swooletw), with a real nginx started by
the test on a free port, and swooletw believing C{X-Real-IP} /
C{X-Forwarded-For} / C{X-Forwarded-Proto} only from trusted proxies.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess

from twisted.internet.defer import inlineCallbacks
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import SkipTest, TestCase

from swooletw import BASE, HttpServer

NGINX = shutil.which("nginx") or ("/usr/sbin/nginx" if os.path.exists("/usr/sbin/nginx") else None)

#: the README's site, with the tutorial's "static if it exists, else the app"
SITE = """
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    server {{
        listen 127.0.0.1:{port};
        root {dir}/www;
        index index.html;
        location / {{
            if (!-e $request_filename) {{
                proxy_pass http://127.0.0.1:{app};
            }}
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header X-Real-IP $remote_addr;
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
        }}
    }}
}}
"""


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(port: int, path: str, source: str = "127.0.0.2", extra: str = "") -> tuple[int, dict[str, str], bytes]:
    """
    A blocking GET from C{source} (another loopback address, so the client
    and nginx differ), with C{extra} header lines.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0)) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: swoole.example.com\r\n{extra}Connection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


class NginxTests(TestCase):
    def setUp(self) -> None:
        if NGINX is None:
            raise SkipTest("nginx is not installed (.ci/run installs Debian's nginx)")
        self.dir = os.path.abspath(self.mktemp())
        os.makedirs(os.path.join(self.dir, "www"))
        with open(os.path.join(self.dir, "www", "index.html"), "w") as f:
            f.write("<h1>static from nginx</h1>\n")

    def startApp(self, trusted: list[str] | None) -> HttpServer:
        serv = HttpServer("127.0.0.1", 0, BASE)
        serv.set(worker_num=1, http_trusted_proxies=trusted)

        def onRequest(request, response):
            response.header("Content-Type", "application/json")
            response.end(json.dumps({
                "remote_addr": request.server["remote_addr"],
                "scheme": request.server["request_scheme"],
                "uri": request.server["request_uri"],
            }))

        serv.on("request", onRequest)
        service = serv.asService()
        service.privilegedStartService()
        service.startService()
        self.addCleanup(service.stopService)
        return serv

    def startNginx(self, appPort: int) -> int:
        port = freePort()
        config = os.path.join(self.dir, "nginx.conf")
        with open(config, "w") as f:
            f.write(SITE.format(dir=self.dir, port=port, app=appPort))
        log = open(os.path.join(self.dir, "stderr.log"), "wb")
        self.addCleanup(log.close)
        process = subprocess.Popen(
            [NGINX, "-c", config, "-p", self.dir, "-e", os.path.join(self.dir, "error.log")],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log,
        )

        def stop() -> None:
            if process.poll() is None:
                process.send_signal(signal.SIGQUIT)
                try:
                    process.wait(10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)

        self.addCleanup(stop)
        return port

    @inlineCallbacks
    def waitForNginx(self, port: int) -> object:
        def ready() -> bool:
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    return True
                except OSError:
                    import time

                    time.sleep(0.05)  # poll interval until nginx listens
            return False

        self.assertTrue((yield deferToThread(ready)), open(os.path.join(self.dir, "error.log")).read())

    @inlineCallbacks
    def test_staticFromNginxRestProxied(self) -> object:
        """
        A file under nginx's root comes from nginx; anything else reaches
        swooletw, which believes the client's address from the trusted
        proxy.
        """
        serv = self.startApp(["127.0.0.1"])
        port = self.startNginx(serv.port)
        yield self.waitForNginx(port)
        status, headers, body = yield deferToThread(fetch, port, "/index.html")
        self.assertEqual((status, body), (200, b"<h1>static from nginx</h1>\n"))
        self.assertIn("nginx", headers.get("server", ""))
        status, headers, body = yield deferToThread(fetch, port, "/app/page?x=1")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"remote_addr": "127.0.0.2", "scheme": "http", "uri": "/app/page"})

    @inlineCallbacks
    def test_untrustedProxyNotBelieved(self) -> object:
        """
        Without trusted proxies (the default), the forwarded headers are
        ignored: the address is nginx's own.
        """
        serv = self.startApp(None)
        port = self.startNginx(serv.port)
        yield self.waitForNginx(port)
        status, _, body = yield deferToThread(fetch, port, "/app")
        self.assertEqual((status, json.loads(body)["remote_addr"]), (200, "127.0.0.1"))

    @inlineCallbacks
    def test_forgedHeadersFromClientIgnored(self) -> object:
        """
        A client talking to swooletw directly cannot claim another address
        with the forwarded headers.
        """
        serv = self.startApp(["127.0.0.1"])
        forged = "X-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-Proto: https\r\n"
        status, _, body = yield deferToThread(fetch, serv.port, "/", "127.0.0.2", forged)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body)["remote_addr"], "127.0.0.2")
        self.assertEqual(json.loads(body)["scheme"], "http")
