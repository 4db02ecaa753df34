# Tutorial §7.1: the echo server ("hello server" + data).
#   twistd -ny tap/echo.tac          (port: $SWOOLETW_PORT, default 9501)
import os

from twisted.application import service

from swooletw.examples.echo import makeServer

serv = makeServer("127.0.0.1", int(os.environ.get("SWOOLETW_PORT", "9501")))
application = service.Application("swooletw echo")
serv.asService().setServiceParent(application)
