# Tutorial §14: the mail task server (TaskServer/TaskRun/Mailer).  Send
#   {"event": "send-mail", "to": ..., "subject": ..., "content": ...}\r\n
# and read the one-line JSON reply; the mail lands in the Maildir ./outbox
# (relative to the working directory).  For SMTP, use
# twistd -n swoole-tcp --smtp ... instead.
#   twistd -ny tap/mail.tac          (port: $SWOOLETW_PORT, default 9501)
import os

from twisted.application import service

from swooletw.mail.taskserver import makeServer

serv = makeServer("127.0.0.1", int(os.environ.get("SWOOLETW_PORT", "9501")))
application = service.Application("swooletw mail")
serv.asService().setServiceParent(application)
