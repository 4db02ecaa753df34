# Tutorial §13, method 1: open_eof_check ("\r\n"); one receive may hold
# several packets.
#   twistd -ny tap/eof_check.tac     (port: $SWOOLETW_PORT, default 9501)
import os

from twisted.application import service

from swooletw.examples.packets import makeEOFCheckServer

serv = makeEOFCheckServer("127.0.0.1", int(os.environ.get("SWOOLETW_PORT", "9501")))
application = service.Application("swooletw eof check")
serv.asService().setServiceParent(application)
