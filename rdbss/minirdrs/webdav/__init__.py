"""The WebDAV mini-redirector (package): serves WebDAV collections as ``\\\\<server>\\<share>``.

Config::

    [[minirdr]]
    name = "webdav"
    kind = "webdav"
    timeout = 30.0                    # seconds: each read/write of a request (a set-up:
                                      # [daemon] connect_timeout)
    staging_dir = "/var/tmp"          # optional: where the private staging folder is made
    notify_interval = 1.0             # seconds between two PROPFINDs of a watched collection
    [minirdr.servers.davtest]         # \\\\davtest\\<share> reaches this server
    url = "https://dav.example/dav/"  # shares are the first path component under this URL
    username = "davuser"              # optional (anonymous without it)
    password_file = "/path/to/file"   # or password_env = "VAR", or password = "..." (discouraged)
    verify = true                     # optional, https: false, or a CA bundle path

Credentials are read when the SrvCall is created (MRxCreateSrvCall), live only in that SrvCall's
httpx auth object, and never appear in a log line, a message, an exception text or a result.
The authentication scheme is the one the server's 401 challenge asks for (Digest, else Basic).
One ``httpx.Client`` per SrvCall, with explicit timeouts; the host runs each SrvCall's routines
serially on that SrvCall's own worker thread.

Writes: HTTP cannot write part of a resource (wsgidav refuses a ranged PUT), so an open with
write access keeps a staging file (an unnamed temporary file in a private 0700 folder) holding
the whole file. It is made on the first write or size change: empty when this open created or
overwrote the file, else by downloading it. Writes and truncates go to it, reads on that handle
read it, and the whole file is PUT back on MRxFlush and on MRxCloseSrvOpen; a failed upload is
the close's status. So data written through a handle reaches the server at flush or close, not
at each write (as with Windows' own WebDAV redirector). A file this open created or overwrote
and writes sequentially from byte 0 is also streamed to the server while the writes arrive: one
PUT with a chunked body, sent by a thread that reads what the writes staged, ending at the flush
or close (so the upload overlaps the writes instead of following them). The staging file stays
the truth: the first write that is not at the end (or a size change, a rename, a delete) ends
the stream, and if the streamed PUT failed or did not carry the whole file (the server refused a
chunked body, the connection broke, an HTTP error), the close (or flush) PUTs the staged file
whole as before, and that upload's failure is the close's status; nothing written is lost
silently. While a stream runs, other clients may see the file partly written. When the core
re-opens a handle by path after a lost connection (same FOBX), the staged data of the SrvOpen it
lost moves to the new one. Two handles writing the same file each upload their whole copy: the last
close wins (WebDAV locks are not taken; byte-range locks are not offered at all, since WebDAV
locks are whole-resource). Reads on handles without staged data are ranged GETs: a read at any
offset is one GET of exactly its range; a read that starts where the previous one of the same
handle ended, or a read of 1 MiB or more from byte 0 of a file longer than that read (the start
of a whole-file read), opens a streaming GET of the rest of the file (``Range: bytes=N-``)
that the next sequential reads take their bytes from. A read elsewhere (a seek), a write or
size change through the handle, an error, the end of the file, the close and a lost connection
close the stream; so does a third stream on the same server (at most two per server, the least
recently used goes: each holds one of the client's four pooled connections). A stream that
breaks (the server closed the idle connection, a timeout) is reopened once at the same offset
before the read fails. A stream does not see another client's later changes until the handle
seeks (as a stale cached page would not); the handle's own writes always go to the staging
file, which reads then use.

Round trips: a stat (MRxQueryOpen) and an open of an existing name are one PROPFIND Depth 0;
creating (or overwriting) a file adds its PUT of nothing (and, below the top level, a PROPFIND
of the parent folder to tell OBJECT_PATH_NOT_FOUND). That PUT's answer describes the empty file
it made when it carries a strong ETag and a Date: the Date (the server's clock, to the second,
as getlastmodified goes) is its last write and, for a new file, its creation; without them a
PROPFIND of what the server made follows. A compound's create of an existing
file with related READs from its start and its close (``Client.read_bytes``, fsspec ``cat``) is
one ranged GET when a PROPFIND answered the file's properties before and the GET's ETag, size
and Last-Modified show they still hold (``chain``), or when the file's last PUT went through
this SrvCall and the GET's strong ETag and size are those of that PUT's answer (a file read
right after it was written through rdbss); otherwise the PROPFIND follows it.

Not supported honestly: setting times (FileBasicInformation with a time answers
STATUS_NOT_SUPPORTED; WebDAV's getlastmodified is protected) and the read-only attribute
(STATUS_NOT_SUPPORTED); other attribute bits are accepted and ignored (there is nowhere to keep
them). Names are case sensitive, as the server's URLs are.

HTTP status -> NTSTATUS: 401 LOGON_FAILURE, 403 ACCESS_DENIED, 404 OBJECT_NAME_NOT_FOUND (or
OBJECT_PATH_NOT_FOUND when the parent is missing, found by a PROPFIND of the parent), 405 on MKCOL
OBJECT_NAME_COLLISION (on PUT FILE_IS_A_DIRECTORY), 409 OBJECT_PATH_NOT_FOUND (the parent is
missing), 412 OBJECT_NAME_COLLISION, 416 END_OF_FILE, 423 SHARING_VIOLATION, 413/507 DISK_FULL,
other 5xx UNEXPECTED_NETWORK_ERROR, anything else unexpected INVALID_NETWORK_RESPONSE.

Transport: a connect error, a read/write error or a protocol error mid-session is
STATUS_CONNECTION_DISCONNECTED and marks the SrvCall dead (later calls answer at once; the next
MRxCreateSrvCall for that server makes a new connection); a timeout is STATUS_IO_TIMEOUT. At
MRxCreateSrvCall: the socket's errno through the one table of every backend
(``network_status_from_errno``: refused REMOTE_NOT_LISTENING, no route NETWORK_UNREACHABLE), an
unknown host or server name BAD_NETWORK_PATH.

Modules: ``config`` (the configuration), ``connect`` (SrvCall set-up), ``session`` (requests to
a server), ``props`` (PROPFIND bodies and answers, pure), ``errors`` (HTTP -> NTSTATUS),
``handle`` (an open's state), ``stream`` and ``staging`` (what an open holds: its streaming GET,
its staging file and streamed upload), ``reads`` (ranged and streaming GETs of an open),
``chain`` (a small file's create, reads and close in one GET),
``spool`` (an open's writes, truncates and uploads through its staging file), ``minirdr`` (the
routines, ``WebDavMiniRdr``).
"""
