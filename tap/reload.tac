# Tutorial §11: Reload.php: greeting.py is imported in workerStart, so
# a reload (kill -USR1 <master pid>) serves its new code.
#   twistd -ny tap/reload.tac        (port: $SWOOLETW_PORT, default 9501)
import os
import sys

from twisted.application import service

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from swooletw.examples.reload import ReloadServer  # noqa: E402

app = ReloadServer("127.0.0.1", int(os.environ.get("SWOOLETW_PORT", "9501")))
application = service.Application("swooletw reload")
app.server.asService().setServiceParent(application)
