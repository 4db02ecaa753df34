"""
Service makers behind the C{twistd} plugins (C{twistd swoole-tcp}).
"""
