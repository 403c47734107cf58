"""The SMB mini-redirector: the shares of configured SMB2/3 servers (Samba, Windows) served as
``\\\\<server>\\<share>`` through smbprotocol, with the server's own semantics.

One module per protocol concern (the MS-SMB2 section each follows is named in it):

- ``minirdr.py``: ``SmbMiniRdr``, the routines (the dispatch table's entries);
- ``link.py``: one ``SmbLink`` per SrvCall: connection, session and tree connects, deadlines;
- ``config.py``: the ``[[minirdr]]`` options, typed (msgspec);
- ``status.py``: which failures end a link and the NtStatus each one answers;
- ``structures.py``: the raw SMB2 requests and information buffers this package packs and parses;
- ``compound.py``: related compounds (CREATE + QUERY_INFO [+ CLOSE]) in one exchange;
- ``opens.py``: the SrvOpen records and their table;
- ``io.py``: READ, WRITE and FLUSH;
- ``info.py``: QUERY_INFO / SET_INFO (file, EA, security, quota, volume);
- ``directory.py``: QUERY_DIRECTORY;
- ``waits.py``: requests the server keeps pending (blocking locks, CHANGE_NOTIFY) and CANCEL.

Nothing is imported here, so ``config.py`` and ``status.py`` load without smbprotocol's sessions.
"""
