"""
twistd plugins of swooletw: declarations only (imported by every twistd
start to list its subcommands, so nothing else happens here).
"""

from twisted.application.service import ServiceMaker

swooleTCP = ServiceMaker(
    "swooletw TCP server",
    "swooletw.tap.tcp",
    "A Swoole-style TCP server (framing, timers; the tutorial's apps).",
    "swoole-tcp",
)
