# Tutorial §11: NoReload.php: greeting.py is imported before start(), so a
# reload (kill -USR1 <master pid>) keeps the old code until a full restart.
#   twistd -ny tap/noreload.tac        (port: $SWOOLETW_PORT, default 9501)
import os
import sys

from twisted.application import service

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from swooletw.examples.reload import NoReloadServer  # noqa: E402

app = NoReloadServer("127.0.0.1", int(os.environ.get("SWOOLETW_PORT", "9501")))
application = service.Application("swooletw noreload")
app.server.asService().setServiceParent(application)
