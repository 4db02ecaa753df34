# Tutorial §13, method 2 (ServerPack): pack('N', strlen($data)) . $data.
#   twistd -ny tap/length.tac        (port: $SWOOLETW_PORT, default 9501)
import os

from twisted.application import service

from swooletw.examples.packets import makeLengthServer

serv = makeLengthServer("127.0.0.1", int(os.environ.get("SWOOLETW_PORT", "9501")))
application = service.Application("swooletw length")
serv.asService().setServiceParent(application)
