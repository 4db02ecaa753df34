# The tutorial's Test.php for tap/reload.tac and tap/noreload.tac: edit the
# reply below, then `kill -USR1 <master pid>`.


class Test:
    def run(self, data: bytes) -> bytes:
        return b"v1: " + data
