# Tutorial §15: the HTTP server ("hello world." to every request).
#   twistd -ny tap/http.tac          (port: $SWOOLETW_PORT, default 8000)
import os

from twisted.application import service

from swooletw.examples.http import makeServer

serv = makeServer("127.0.0.1", int(os.environ.get("SWOOLETW_PORT", "8000")))
application = service.Application("swooletw http")
serv.asService().setServiceParent(application)
