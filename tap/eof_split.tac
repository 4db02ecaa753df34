# Tutorial §13, method 1 with open_eof_split: one packet per receive.
#   twistd -ny tap/eof_split.tac     (port: $SWOOLETW_PORT, default 9501)
import os

from twisted.application import service

from swooletw.examples.packets import makeEOFSplitServer

serv = makeEOFSplitServer("127.0.0.1", int(os.environ.get("SWOOLETW_PORT", "9501")))
application = service.Application("swooletw eof split")
serv.asService().setServiceParent(application)
