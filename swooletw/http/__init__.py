"""
Swoole's HTTP server: L{HttpServer}, L{HttpRequest}, L{HttpResponse}.
"""

from swooletw.http.request import HttpRequest
from swooletw.http.response import HttpResponse
from swooletw.http.server import HttpServer

__all__ = ["HttpServer", "HttpRequest", "HttpResponse"]
