"""The SFTP mini-redirector package (asyncssh against OpenSSH's sftp-server).

The routines are in :mod:`rdbss.minirdrs.sftp.minirdr`; this package module imports nothing, so
reading a configuration (:mod:`rdbss.minirdrs.sftp.config`) does not need asyncssh.
"""
