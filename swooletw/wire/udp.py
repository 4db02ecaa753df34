# -*- test-case-name: tests.test_server -*-
"""
A UDP port of a server: each datagram fires C{packet}.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.protocol import DatagramProtocol
from twisted.logger import Logger

from swooletw.events import invoke

if TYPE_CHECKING:  # pragma: no cover
    from swooletw.api.port import Port
    from swooletw.wire.table import ServerStats

__all__ = ["UDPPortProtocol"]


class UDPPortProtocol(DatagramProtocol):
    """
    A UDP port: each datagram fires C{packet(serv, data, client_info)}.
    """

    log = Logger()

    def __init__(self, serv: Any, port: Port, stats: ServerStats) -> None:
        self.serv = serv
        self.port = port
        self.stats = stats
        self.onPacket = port.getCallback("packet")

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        stats = self.stats
        stats.request_count += 1
        stats.total_recv_bytes += len(data)
        if self.onPacket is None:
            return
        clientInfo = {"address": addr[0], "port": addr[1], "server_socket": self.port.index}
        invoke(self.onPacket, (self.serv, data, clientInfo), "packet", peer=f"{addr[0]}:{addr[1]}")

    def sendto(self, ip: str, port: int, data: bytes) -> bool:
        """
        Send one datagram.
        """
        if self.transport is None:
            return False
        self.transport.write(data, (ip, port))
        self.stats.total_send_bytes += len(data)
        self.stats.response_count += 1
        return True
