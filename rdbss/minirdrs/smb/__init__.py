"""The SMB mini-redirector: the shares of configured SMB2/3 servers (Samba, Windows) served as
``\\\\<server>\\<share>`` through smbprotocol, with the server's own semantics.

- ``minirdr.py``: ``SmbMiniRdr``, the routines (the dispatch table's entries);
- ``link.py``: one ``SmbLink`` per SrvCall: connection, session and tree connects, deadlines.
"""
