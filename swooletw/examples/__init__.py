"""
The tutorial's programs (C{shared/seed/swoole-tutorial.txt}), ported line by
line.  Each module has a C{makeServer(host, port)}; the C{.tac} files in the
top-level C{tap/} directory run them under C{twistd}.
"""
