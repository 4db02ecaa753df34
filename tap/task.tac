# Tutorial §8: receive hands the data to a task and replies "This is a
# message from server." at once; the task works (blocking) in a task thread
# for five seconds; finish logs its result.
#   twistd -ny tap/task.tac          (port: $SWOOLETW_PORT, default 9501)
import os

from twisted.application import service

from swooletw.examples.task import makeServer

serv = makeServer("127.0.0.1", int(os.environ.get("SWOOLETW_PORT", "9501")))
application = service.Application("swooletw task")
serv.asService().setServiceParent(application)
