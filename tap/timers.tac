# Tutorial §12: a tick started only in worker 0 (cleared after five ticks),
# a one-off timer per received packet, and swoole_timer_tick with params.
#   twistd -ny tap/timers.tac        (port: $SWOOLETW_PORT, default 9501)
import os

from twisted.application import service

from swooletw.examples.timers import makeServer, startGlobalTick

serv = makeServer("127.0.0.1", int(os.environ.get("SWOOLETW_PORT", "9501")))
startGlobalTick()
application = service.Application("swooletw timers")
serv.asService().setServiceParent(application)
