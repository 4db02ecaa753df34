"""
Swoole's constants, with Swoole's values, without the C{SWOOLE_} prefix.

PHP code such as C{new swoole_client(SWOOLE_SOCK_TCP, SWOOLE_SOCK_SYNC)}
ports as C{Client(SOCK_TCP, SOCK_SYNC)} after
C{from swooletw.constants import SOCK_TCP, SOCK_SYNC}.  Pure Python: nothing
here imports Twisted.
"""

from enum import IntEnum

__all__ = [
    "SockType",
    "SOCK_TCP",
    "SOCK_UDP",
    "SOCK_TCP6",
    "SOCK_UDP6",
    "UDP_TYPES",
    "Mode",
    "BASE",
    "PROCESS",
    "SOCK_SYNC",
    "SOCK_ASYNC",
    "SSL",
    "KEEP",
    "ERROR_DNSLOOKUP_RESOLVE_FAILED",
    "ERROR_PACKAGE_LENGTH_TOO_LARGE",
    "ERROR_PACKAGE_MALFORMED_DATA",
    "ERROR_CLIENT_NO_CONNECTION",
]


# ------------------------------------------------------------ socket types
class SockType(IntEnum):
    """
    Swoole's socket types (C{SWOOLE_SOCK_TCP} ...), for servers, ports and
    clients.
    """

    SOCK_TCP = 1
    SOCK_UDP = 2
    SOCK_TCP6 = 3
    SOCK_UDP6 = 4


#: A TCP socket over IPv4 (C{SWOOLE_SOCK_TCP}).
SOCK_TCP = SockType.SOCK_TCP
#: A UDP socket over IPv4 (C{SWOOLE_SOCK_UDP}).
SOCK_UDP = SockType.SOCK_UDP
#: A TCP socket over IPv6 (C{SWOOLE_SOCK_TCP6}).
SOCK_TCP6 = SockType.SOCK_TCP6
#: A UDP socket over IPv6 (C{SWOOLE_SOCK_UDP6}).
SOCK_UDP6 = SockType.SOCK_UDP6
#: The datagram socket types.
UDP_TYPES = frozenset({SOCK_UDP, SOCK_UDP6})


# ------------------------------------------------------------ server modes
class Mode(IntEnum):
    """
    Swoole's server modes, the third argument of C{Swoole\\Server}.
    """

    BASE = 1
    PROCESS = 2


#: C{SWOOLE_BASE}.
BASE = Mode.BASE
#: C{SWOOLE_PROCESS} (Swoole's default).
PROCESS = Mode.PROCESS

# ------------------------------------------------------- client modes/flags
#: A blocking client (C{SWOOLE_SOCK_SYNC}), the second argument of
#: C{swoole_client}; L{swooletw.client.Client} is always this.
SOCK_SYNC = 0
#: An asynchronous client (C{SWOOLE_SOCK_ASYNC}); in swooletw that is
#: L{swooletw.asyncclient.AsyncClient}, a separate class.
SOCK_ASYNC = 1
#: C{SWOOLE_SSL}, or-ed into the socket type for a TLS client (not available
#: in the swooletw clients yet; they refuse it).
SSL = 512
#: C{SWOOLE_KEEP}, or-ed into the socket type for a persistent connection
#: reused across PHP requests (refused: keep the client object instead).
KEEP = 4096

# ------------------------------------------------- Swoole's own error codes
# Besides C{errno} values (111 ECONNREFUSED, 110 ETIMEDOUT, ...), a client's
# C{errCode} may hold one of these.
#: A host name could not be resolved.
ERROR_DNSLOOKUP_RESOLVE_FAILED = 704
#: A packet is over C{package_max_length}.
ERROR_PACKAGE_LENGTH_TOO_LARGE = 1201
#: The data broke the framing in another way (bad length field, a
#: C{package_length_func} that rejected it).
ERROR_PACKAGE_MALFORMED_DATA = 1204
#: The client is not connected.
ERROR_CLIENT_NO_CONNECTION = 5001
