"""The raw SMB2 requests and information buffers the SMB mini-redirector packs and parses itself
(so times keep their 100 ns precision): pure, no connection needed.

- requests: LOCK elements (MS-SMB2 2.2.26.1), CHANGE_NOTIFY (2.2.35), QUERY_DIRECTORY
  (2.2.33), QUERY_INFO (2.2.37) and SET_INFO (2.2.39) as smbprotocol structures (the requests
  of the small-file path are packed by packed.py);
- answers: the QUERY_DIRECTORY (2.2.34), QUERY_INFO (2.2.38) and READ (2.2.20) buffers and the
  WRITE count (2.2.22), the last three read with ``struct`` where smbprotocol's structures
  put them (right after the fixed part);
- buffers of MS-FSCC 2.4 (file information classes): FileAllInformation,
  FileStandardInformation, FileIdFullDirectoryInformation, and the SET_INFO buffers of
  FileBasicInformation, FileEndOfFileInformation, FileAllocationInformation,
  FileRenameInformation and FileDispositionInformation; of MS-FSCC 2.5 (file system
  information classes): FileFs{Volume,Device,Attribute,FullSize}Information.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any

from smbprotocol.change_notify import SMB2ChangeNotifyRequest, SMB2ChangeNotifyResponse
from smbprotocol.open import (
    SMB2LockElement,
    SMB2QueryDirectoryRequest,
    SMB2QueryDirectoryResponse,
    SMB2QueryInfoRequest,
    SMB2SetInfoRequest,
)

from rdbss.wire.constants import FileAttributes
from rdbss.wire.status import NtStatus, NtStatusError

S = NtStatus

FILETIME_EPOCH = 116_444_736_000_000_000  # 1970-01-01 as a FILETIME (100 ns since 1601)
MAX_PAYLOAD = 65_536  # one credit's worth (MS-SMB2 3.1.5.2)
INFO_BUFFER = 65_536
#: "the file of the previous CREATE in this compound" (MS-SMB2 3.2.4.1.4)
RELATED_FILE_ID = b"\xff" * 16
#: QUERY_INFO / SET_INFO InfoType (MS-SMB2 2.2.37).
SMB2_0_INFO_FILE = 1
SMB2_0_INFO_FILESYSTEM = 2
SMB2_0_INFO_SECURITY = 3
SMB2_0_INFO_QUOTA = 4
#: The FileInformationClass values this package asks for itself (MS-FSCC 2.4).
FILE_STANDARD_INFORMATION = 5
FILE_FULL_EA_INFORMATION = 15
FILE_ALL_INFORMATION = 18
FILE_QUOTA_INFORMATION = 32
FILE_ID_FULL_DIRECTORY_INFORMATION = 38
#: QUERY_INFO flags: SL_RESTART_SCAN (MS-SMB2 2.2.37).
SL_RESTART_SCAN = 0x01
#: QUERY_DIRECTORY flags (MS-SMB2 2.2.33).
RESTART_SCANS = 0x01
REOPEN = 0x10
#: LOCK element flags (MS-SMB2 2.2.26.1).
LOCK_SHARED = 0x01
LOCK_EXCLUSIVE = 0x02
LOCK_UNLOCK = 0x04
LOCK_FAIL_IMMEDIATELY = 0x10
#: CHANGE_NOTIFY: watch the whole tree (MS-SMB2 2.2.35).
SMB2_WATCH_TREE = 0x0001
NOTIFY_BUFFER = 32_768
#: The share modes every open of this package grants (read, write, delete).
SHARE_ALL = 0x7


def filetime_to_ns(value: int) -> int:
    """POSIX nanoseconds of a FILETIME; 0 (unknown) stays 0."""
    return (value - FILETIME_EPOCH) * 100 if value > 0 else 0


def ns_to_filetime(ns: int) -> int:
    """A FILETIME for POSIX nanoseconds; 0 or below means "leave unchanged" (FILETIME 0)."""
    return ns // 100 + FILETIME_EPOCH if ns > 0 else 0


# --------------------------------------------------------------------------------------------
# Requests
# --------------------------------------------------------------------------------------------


def _message(cls: type[Any], **fields: Any) -> Any:
    """An smbprotocol request structure with ``fields`` set."""
    message = cls()
    for name, value in fields.items():
        message[name] = value
    return message


def _buffer(cls: type[Any], header: Any) -> bytes:
    """The variable-length buffer of an answer (``header``: smbprotocol's response header)."""
    response = cls()
    response.unpack(header["data"].get_value())
    data: bytes = response["buffer"].get_value()
    return data


_QUERY_INFO_ANSWER = struct.Struct("<HHI")  # MS-SMB2 2.2.38 before the buffer
_READ_ANSWER = struct.Struct("<HBBIII")  # MS-SMB2 2.2.20 before the buffer
_WRITE_ANSWER = struct.Struct("<HHI")  # MS-SMB2 2.2.22 up to Count


def _answer(header: Any, layout: struct.Struct, what: str) -> tuple[bytes, tuple[int, ...]]:
    """An answer's bytes after the header and its fixed part unpacked."""
    data: bytes = header["data"].get_value()
    if len(data) < layout.size:
        raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, f"short {what} response")
    return data, layout.unpack_from(data)


def read_buffer(header: Any) -> bytes:
    """The data of a READ answer (``header``: smbprotocol's response header)."""
    data, (_size, _offset, _r, length, _remaining, _r2) = _answer(header, _READ_ANSWER, "READ")
    return data[_READ_ANSWER.size : _READ_ANSWER.size + length]


def write_count(header: Any) -> int:
    _data, (_size, _r, count) = _answer(header, _WRITE_ANSWER, "WRITE")
    return count


def lock_element(offset: int, length: int, flags: int) -> Any:
    return _message(SMB2LockElement, offset=offset, length=length, flags=flags)


def change_notify_request(file_id: bytes, completion_filter: int, watch_tree: bool) -> Any:
    return _message(
        SMB2ChangeNotifyRequest,
        flags=SMB2_WATCH_TREE if watch_tree else 0,
        output_buffer_length=NOTIFY_BUFFER,
        file_id=file_id,
        completion_filter=completion_filter,
    )


def change_notify_buffer(header: Any) -> bytes:
    return _buffer(SMB2ChangeNotifyResponse, header)


def query_info_request(file_id: bytes, info_type: int, info_class: int) -> Any:
    return _message(
        SMB2QueryInfoRequest,
        info_type=info_type,
        file_info_class=info_class,
        output_buffer_length=INFO_BUFFER,
        file_id=file_id,
    )


def query_info_buffer(header: Any) -> bytes:
    data, (_size, _offset, length) = _answer(header, _QUERY_INFO_ANSWER, "QUERY_INFO")
    return data[_QUERY_INFO_ANSWER.size : _QUERY_INFO_ANSWER.size + length]


def set_info_request(
    file_id: bytes, info_class: int, buffer: bytes, info_type: int = SMB2_0_INFO_FILE
) -> Any:
    return _message(
        SMB2SetInfoRequest,
        info_type=info_type,
        file_info_class=info_class,
        file_id=file_id,
        buffer=buffer,
    )


def query_directory_request(file_id: bytes, pattern: str, info_class: int, flags: int) -> Any:
    return _message(
        SMB2QueryDirectoryRequest,
        file_information_class=info_class,
        flags=flags,
        file_id=file_id,
        output_buffer_length=INFO_BUFFER,
        buffer=pattern.encode("utf-16-le"),
    )


def query_directory_buffer(header: Any) -> bytes:
    return _buffer(SMB2QueryDirectoryResponse, header)


# --------------------------------------------------------------------------------------------
# SET_INFO buffers
# --------------------------------------------------------------------------------------------


def pack_basic(times: tuple[int, int, int, int], attributes: int) -> bytes:
    """FileBasicInformation: the four FILETIMEs (0: unchanged) and the attributes (0: same)."""
    return struct.pack("<qqqqII", *times, attributes, 0)


def pack_size(size: int) -> bytes:
    """FileEndOfFileInformation / FileAllocationInformation."""
    return struct.pack("<q", size)


def pack_rename(target: str, replace: bool) -> bytes:
    """FileRenameInformation (the SMB2 form: RootDirectory 0, the share-relative name)."""
    name = target.encode("utf-16-le")
    return struct.pack("<B7xqI", 1 if replace else 0, 0, len(name)) + name


def pack_disposition(delete: bool) -> bytes:
    return b"\x01" if delete else b"\x00"


# --------------------------------------------------------------------------------------------
# Information buffers
# --------------------------------------------------------------------------------------------


_ALL_INFO = struct.Struct("<qqqqIIqqIBBHqIIqIII")  # FileAllInformation up to FileNameLength
_DIR_ENTRY = struct.Struct("<IIqqqqqqIIIIq")  # FileIdFullDirectoryInformation before FileName


@dataclass(slots=True)
class RawInfo:
    """What FileAllInformation / a directory entry says about a file."""

    creation_time: int  # POSIX ns
    last_access_time: int
    last_write_time: int
    change_time: int
    attributes: int
    allocation_size: int
    size: int
    nlink: int | None
    delete_pending: bool
    directory: bool
    file_id: int

    @classmethod
    def from_wire(
        cls,
        filetimes: tuple[int, int, int, int],
        attributes: int,
        allocation_size: int,
        size: int,
        nlink: int | None,
        delete_pending: bool,
        directory: bool,
        file_id: int,
    ) -> RawInfo:
        """From the wire's four FILETIMEs (creation, last access, last write, change) and the
        other fields."""
        creation, access, write, change = (filetime_to_ns(t) for t in filetimes)
        return cls(
            creation, access, write, change, attributes, allocation_size, size, nlink,
            delete_pending, directory, file_id,
        )  # fmt: skip


def parse_all_information(data: bytes) -> RawInfo:
    if len(data) < _ALL_INFO.size:
        raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, "short FileAllInformation")
    (ctime, atime, mtime, chtime, attrs, _r1, alloc, eof, nlink, delete, directory, _r2,
     index, _ea, _access, _pos, _mode, _align, _name_len) = _ALL_INFO.unpack_from(data)  # fmt: skip
    return RawInfo.from_wire(
        (ctime, atime, mtime, chtime),
        attrs,
        alloc,
        eof,
        nlink,
        bool(delete),
        bool(directory),
        index,
    )


def parse_end_of_file(data: bytes) -> int:
    """EndOfFile from FileStandardInformation."""
    if len(data) < 16:
        raise NtStatusError(S.STATUS_INVALID_NETWORK_RESPONSE, "short FileStandardInformation")
    eof: int = struct.unpack_from("<q", data, 8)[0]
    return eof


def parse_directory_entries(data: bytes) -> list[tuple[str, RawInfo]]:
    """(name, info) of each FileIdFullDirectoryInformation entry in a QUERY_DIRECTORY answer."""
    entries: list[tuple[str, RawInfo]] = []
    offset = 0
    while offset + _DIR_ENTRY.size <= len(data):
        (nxt, _index, ctime, atime, mtime, chtime, eof, alloc, attrs, name_len, _ea, _r,
         file_id) = _DIR_ENTRY.unpack_from(data, offset)  # fmt: skip
        start = offset + _DIR_ENTRY.size
        name = data[start : start + name_len].decode("utf-16-le", errors="surrogatepass")
        info = RawInfo.from_wire(
            (ctime, atime, mtime, chtime),
            attrs,
            alloc,
            eof,
            None,
            False,
            bool(attrs & 0x10),
            file_id,
        )
        entries.append((name, info))
        if nxt == 0:
            break
        offset += nxt
    return entries


def parse_volume(answers: dict[int, bytes]) -> dict[str, Any]:
    """The volume map from FileFs{Volume,Device,Attribute,FullSize}Information buffers."""
    result: dict[str, Any] = {}
    data = answers.get(7)
    if data is not None and len(data) >= 32:
        total, caller, actual, sectors, sector_bytes = struct.unpack_from("<qqqII", data)
        unit = sectors * sector_bytes
        result.update(
            total_bytes=total * unit,
            free_bytes=actual * unit,
            avail_bytes=caller * unit,
            bytes_per_sector=sector_bytes,
            sectors_per_allocation_unit=sectors,
        )
    data = answers.get(1)
    if data is not None and len(data) >= 18:
        _created, serial, label_len = struct.unpack_from("<qII", data)
        result["serial"] = serial
        result["label"] = data[18 : 18 + label_len].decode("utf-16-le", errors="replace")
    data = answers.get(5)
    if data is not None and len(data) >= 12:
        attrs, max_name, name_len = struct.unpack_from("<IiI", data)
        result["fs_attributes"] = attrs
        result["max_name_length"] = max_name
        result["fs_name"] = data[12 : 12 + name_len].decode("utf-16-le", errors="replace")
    data = answers.get(4)
    if data is not None and len(data) >= 8:
        _device_type, characteristics = struct.unpack_from("<II", data)
        result["device_characteristics"] = characteristics
    return result


def smb_file_info(raw: RawInfo, rel: str, *, delete_pending: bool = False) -> dict[str, Any]:
    """The file info map of the dispatch interface's conventions (rdbss/minirdrs/base.py) for
    an SMB answer."""
    info: dict[str, Any] = {
        "name": rel,
        "size": 0 if raw.directory else raw.size,
        "allocation_size": 0 if raw.directory else raw.allocation_size,
        "attributes": raw.attributes or int(FileAttributes.NORMAL),
        "creation_time": raw.creation_time,
        "last_access_time": raw.last_access_time,
        "last_write_time": raw.last_write_time,
        "change_time": raw.change_time,
        "directory": raw.directory,
        "delete_pending": raw.delete_pending or delete_pending,
        "file_id": raw.file_id,
    }
    if raw.nlink is not None:
        info["nlink"] = raw.nlink
    return info
