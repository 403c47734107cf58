"""The SMB mini-redirector: the shares of configured SMB2/3 servers (Samba, Windows) served as
``\\\\<server>\\<share>`` through smbprotocol, with the server's own semantics.

One module per protocol concern (the MS-SMB2 section each follows is named in it):

- ``minirdr.py``: ``SmbMiniRdr``, the routines (the dispatch table's entries);
- ``link.py``: one ``SmbLink`` per SrvCall: connection, session and tree connects, deadlines;
- ``packed.py``: the requests of the small-file path (CREATE, QUERY_INFO, READ, WRITE, CLOSE)
  packed with struct and sent on smbprotocol's connection;
- ``receiver.py``: the connection's receiver thread (smbprotocol's loop, headers read with
  struct, signatures checked on the bytes received);
- ``config.py``: the ``[[minirdr]]`` options, typed (msgspec);
- ``status.py``: which failures end a link and the NtStatus each one answers;
- ``structures.py``: the raw SMB2 requests and information buffers this package packs and parses;
- ``compound.py``: related compounds (CREATE + QUERY_INFO [+ CLOSE]) in one exchange;
- ``fused.py``: a compound's create with its related READ or WRITE and close as one exchange;
- ``opens.py``: the SrvOpen records and their table;
- ``io.py``: READ, WRITE and FLUSH;
- ``info.py``: QUERY_INFO / SET_INFO (file, EA, security, quota, volume);
- ``directory.py``: QUERY_DIRECTORY;
- ``waits.py``: requests the server keeps pending (blocking locks, CHANGE_NOTIFY) and CANCEL.

Nothing is imported here, so ``config.py`` and ``status.py`` load without smbprotocol's sessions.

smbprotocol builds and parses every message as a tree of field objects, which cost more CPU per
small file than the rest of the mini-redirector. So the hot path (a stat, an open, a small file
read or written whole) packs its requests and reads its answers with ``struct`` (packed.py,
receiver.py), to the byte what smbprotocol would send and read; the rest of smbprotocol's
connection (message ids and credits, signing, encryption, the pending-request table, session
set-up) is used as it is, and every other request still goes through smbprotocol's structures.
"""
