# -*- test-case-name: tests.test_examples -*-
"""
Tutorial §13: sticky packets ("粘包") and the two framings.

 - L{makeEOFCheckServer}: C{open_eof_check} with C{package_eof "\\r\\n"}:
   a C{receive} may hold several packets.
 - L{makeEOFSplitServer}: with C{open_eof_split}: one packet per C{receive}.
 - L{makeLengthServer}: the C{ServerPack} class: a 4-byte C{N} length
   header, body at offset 4; C{receive} unpacks it.
"""

from __future__ import annotations

import struct

from twisted.logger import Logger

from swooletw.api import Server

log = Logger(namespace="swooletw.examples.packets")


def onReceiveEOF(serv: Server, fd: int, fromId: int, data: bytes) -> None:
    """C{echo "Server received data: {$data}"}."""
    log.info("Server received data: {data!r}", data=data)


def onReceivePack(serv: Server, fd: int, fromId: int, data: bytes) -> None:
    """C{$info = unpack('N', $data); $body = substr($data, -$len);}"""
    (length,) = struct.unpack("!I", data[:4])
    body = data[-length:] if length else b""
    log.info("server received data: {body!r}", body=body)


def makeEOFCheckServer(host: str = "127.0.0.1", port: int = 9501) -> Server:
    """EOF check only: several packets may arrive in one C{receive}."""
    serv = Server(host, port)
    serv.set({"worker_num": 1, "open_eof_check": True, "package_eof": "\r\n"})
    serv.on("Receive", onReceiveEOF)
    return serv


def makeEOFSplitServer(host: str = "127.0.0.1", port: int = 9501) -> Server:
    """EOF split: exactly one packet per C{receive}."""
    serv = Server(host, port)
    serv.set(
        {
            "worker_num": 1,
            "open_eof_check": True,
            "package_eof": "\r\n",
            "open_eof_split": True,
        }
    )
    serv.on("Receive", onReceiveEOF)
    return serv


def makeLengthServer(host: str = "127.0.0.1", port: int = 9501) -> Server:
    """The C{ServerPack} server: fixed header plus body."""
    serv = Server(host, port)
    serv.set(
        {
            "worker_num": 1,
            "open_length_check": True,
            "package_length_type": "N",
            "package_length_offset": 0,
            "package_body_offset": 4,
            "package_max_length": 81920,
        }
    )
    serv.on("Receive", onReceivePack)
    return serv
