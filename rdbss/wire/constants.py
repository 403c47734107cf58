"""Numeric vocabulary of RX_CONTEXT: IRP major functions, low I/O operations, information classes,
create dispositions/options/results and the MINIRDR_DISPATCH routine names (docs/routines.md,
The routines and Low I/O)."""

from __future__ import annotations

from enum import IntEnum, IntFlag, StrEnum
from typing import TYPE_CHECKING

from rdbss.wire.enumview import member_view


class IrpMj(IntEnum):
    CREATE = 0x00
    CLOSE = 0x02
    READ = 0x03
    WRITE = 0x04
    QUERY_INFORMATION = 0x05
    SET_INFORMATION = 0x06
    QUERY_EA = 0x07
    SET_EA = 0x08
    FLUSH_BUFFERS = 0x09
    QUERY_VOLUME_INFORMATION = 0x0A
    SET_VOLUME_INFORMATION = 0x0B
    DIRECTORY_CONTROL = 0x0C
    FILE_SYSTEM_CONTROL = 0x0D
    DEVICE_CONTROL = 0x0E
    LOCK_CONTROL = 0x11
    CLEANUP = 0x12
    QUERY_SECURITY = 0x14
    SET_SECURITY = 0x15
    QUERY_QUOTA = 0x19
    SET_QUOTA = 0x1A


class IrpMn(IntEnum):
    NORMAL = 0x00
    QUERY_DIRECTORY = 0x01
    NOTIFY_CHANGE_DIRECTORY = 0x02
    LOCK = 0x01
    UNLOCK_SINGLE = 0x02
    UNLOCK_ALL = 0x03


class LowIoOp(IntEnum):
    READ = 0
    WRITE = 1
    SHAREDLOCK = 2
    EXCLUSIVELOCK = 3
    UNLOCK = 4
    UNLOCK_MULTIPLE = 5
    FSCTL = 6
    IOCTL = 7
    NOTIFY_CHANGE_DIRECTORY = 8
    CLEAROUT = 9


class LowIoFlags(IntFlag):
    NONE = 0
    FAIL_IMMEDIATELY = 0x01  # SL_FAIL_IMMEDIATELY
    EXCLUSIVE_LOCK = 0x02  # SL_EXCLUSIVE_LOCK


class FileInformationClass(IntEnum):
    FileDirectoryInformation = 1
    FileFullDirectoryInformation = 2
    FileBothDirectoryInformation = 3
    FileBasicInformation = 4
    FileStandardInformation = 5
    FileInternalInformation = 6
    FileEaInformation = 7
    FileNameInformation = 9
    FileRenameInformation = 10
    FileNamesInformation = 12
    FileDispositionInformation = 13
    FilePositionInformation = 14
    FileAllInformation = 18
    FileAllocationInformation = 19
    FileEndOfFileInformation = 20
    FileNetworkOpenInformation = 34
    FileAttributeTagInformation = 35
    FileIdBothDirectoryInformation = 37
    FileIdFullDirectoryInformation = 38


class FsInformationClass(IntEnum):
    FileFsVolumeInformation = 1
    FileFsLabelInformation = 2
    FileFsSizeInformation = 3
    FileFsDeviceInformation = 4
    FileFsAttributeInformation = 5
    FileFsFullSizeInformation = 7


class CreateDisposition(IntEnum):
    FILE_SUPERSEDE = 0
    FILE_OPEN = 1
    FILE_CREATE = 2
    FILE_OPEN_IF = 3
    FILE_OVERWRITE = 4
    FILE_OVERWRITE_IF = 5


class CreateOptions(IntFlag):
    NONE = 0
    FILE_DIRECTORY_FILE = 0x00000001
    FILE_WRITE_THROUGH = 0x00000002
    FILE_SEQUENTIAL_ONLY = 0x00000004
    FILE_NON_DIRECTORY_FILE = 0x00000040
    FILE_CREATE_TREE_CONNECTION = 0x00000080
    FILE_RANDOM_ACCESS = 0x00000800
    FILE_DELETE_ON_CLOSE = 0x00001000
    FILE_OPEN_FOR_BACKUP_INTENT = 0x00004000
    FILE_OPEN_REPARSE_POINT = 0x00200000


class CreateInformation(IntEnum):
    """IoStatus.Information after a create (Create.ReturnedCreateInformation)."""

    FILE_SUPERSEDED = 0
    FILE_OPENED = 1
    FILE_CREATED = 2
    FILE_OVERWRITTEN = 3
    FILE_EXISTS = 4
    FILE_DOES_NOT_EXIST = 5


class Access(IntFlag):
    NONE = 0
    FILE_READ_DATA = 0x0001
    FILE_LIST_DIRECTORY = 0x0001
    FILE_WRITE_DATA = 0x0002
    FILE_ADD_FILE = 0x0002
    FILE_APPEND_DATA = 0x0004
    FILE_READ_EA = 0x0008
    FILE_WRITE_EA = 0x0010
    FILE_EXECUTE = 0x0020
    FILE_DELETE_CHILD = 0x0040
    FILE_READ_ATTRIBUTES = 0x0080
    FILE_WRITE_ATTRIBUTES = 0x0100
    DELETE = 0x00010000
    READ_CONTROL = 0x00020000
    WRITE_DAC = 0x00040000
    WRITE_OWNER = 0x00080000
    SYNCHRONIZE = 0x00100000
    MAXIMUM_ALLOWED = 0x02000000
    GENERIC_ALL = 0x10000000
    GENERIC_EXECUTE = 0x20000000
    GENERIC_WRITE = 0x40000000
    GENERIC_READ = 0x80000000


#: Access bits that let a handle change file data.
WRITE_ACCESS = (
    Access.FILE_WRITE_DATA | Access.FILE_APPEND_DATA | Access.GENERIC_WRITE | Access.GENERIC_ALL
)
#: Access bits that let a handle read file data.
READ_ACCESS = Access.FILE_READ_DATA | Access.GENERIC_READ | Access.GENERIC_ALL


class ShareAccess(IntFlag):
    NONE = 0
    FILE_SHARE_READ = 0x1
    FILE_SHARE_WRITE = 0x2
    FILE_SHARE_DELETE = 0x4
    ALL = 0x7


class FileAttributes(IntFlag):
    NONE = 0
    READONLY = 0x0001
    HIDDEN = 0x0002
    SYSTEM = 0x0004
    DIRECTORY = 0x0010
    ARCHIVE = 0x0020
    NORMAL = 0x0080
    TEMPORARY = 0x0100
    REPARSE_POINT = 0x0400


class FsctlCode(IntEnum):
    """Private control codes on the device FCB (MRxDevFcbXXXControlFile): the management channel."""

    RDBSS_STATUS = 0x00140001  # core: processes, connections, handles, pending
    RDBSS_LIST_SHARES = 0x00140002  # minirdr: the shares it serves
    RDBSS_ADD_SHARE = 0x00140003  # minirdr: serve a new share
    RDBSS_REMOVE_SHARE = 0x00140004  # minirdr: stop serving a share
    RDBSS_PEER_DOWN = 0x00140005  # supervisor -> core: a process died, fail its requests
    RDBSS_SHUTDOWN = 0x00140006  # supervisor -> core: drain and stop
    RDBSS_PING = 0x00140007  # liveness / readiness
    RDBSS_SET_FAULTS = 0x00140008  # faulty minirdr: replace the fault rules (and seed)
    RDBSS_LIST_FAULTS = 0x00140009  # faulty minirdr: the rules and how often each fired


class RxFlags(IntFlag):
    """RxContext.flags."""

    NONE = 0
    #: in a compound: act on the handle of the compound's previous create (SMB2's
    #: SMB2_FLAGS_RELATED_OPERATIONS with FileId 0xFFFFFFFFFFFFFFFF)
    RELATED = 0x1
    #: the client takes answers to separate requests bundled in one CompletionBundle
    BUNDLE_OK = 0x2


class Routine(StrEnum):
    """MINIRDR_DISPATCH routines that RDBSS calls, plus the core <-> connection manager calls."""

    MRxStart = "MRxStart"
    MRxStop = "MRxStop"
    MRxCreate = "MRxCreate"
    MRxCollapseOpen = "MRxCollapseOpen"
    MRxShouldTryToCollapseThisOpen = "MRxShouldTryToCollapseThisOpen"
    MRxFlush = "MRxFlush"
    MRxZeroExtend = "MRxZeroExtend"
    MRxTruncate = "MRxTruncate"
    MRxCleanupFobx = "MRxCleanupFobx"
    MRxCloseSrvOpen = "MRxCloseSrvOpen"
    MRxDeallocateForFcb = "MRxDeallocateForFcb"
    MRxDeallocateForFobx = "MRxDeallocateForFobx"
    MRxIsLockRealizable = "MRxIsLockRealizable"
    MRxForceClosed = "MRxForceClosed"
    MRxAreFilesAliased = "MRxAreFilesAliased"
    MRxQueryDirectory = "MRxQueryDirectory"
    MRxQueryFileInfo = "MRxQueryFileInfo"
    MRxSetFileInfo = "MRxSetFileInfo"
    MRxSetFileInfoAtCleanup = "MRxSetFileInfoAtCleanup"
    MRxQueryEaInfo = "MRxQueryEaInfo"
    MRxSetEaInfo = "MRxSetEaInfo"
    MRxQuerySdInfo = "MRxQuerySdInfo"
    MRxSetSdInfo = "MRxSetSdInfo"
    MRxQueryQuotaInfo = "MRxQueryQuotaInfo"
    MRxSetQuotaInfo = "MRxSetQuotaInfo"
    MRxQueryVolumeInfo = "MRxQueryVolumeInfo"
    MRxSetVolumeInfo = "MRxSetVolumeInfo"
    MRxIsValidDirectory = "MRxIsValidDirectory"
    MRxComputeNewBufferingState = "MRxComputeNewBufferingState"
    MRxLowIOSubmit = "MRxLowIOSubmit"
    MRxExtendForCache = "MRxExtendForCache"
    MRxExtendForNonCache = "MRxExtendForNonCache"
    MRxCompleteBufferingStateChangeRequest = "MRxCompleteBufferingStateChangeRequest"
    MRxCreateVNetRoot = "MRxCreateVNetRoot"
    MRxFinalizeVNetRoot = "MRxFinalizeVNetRoot"
    MRxFinalizeNetRoot = "MRxFinalizeNetRoot"
    MRxExtractNetRootName = "MRxExtractNetRootName"
    MRxCreateSrvCall = "MRxCreateSrvCall"
    MRxSrvCallWinnerNotify = "MRxSrvCallWinnerNotify"
    MRxFinalizeSrvCall = "MRxFinalizeSrvCall"
    MRxDevFcbXXXControlFile = "MRxDevFcbXXXControlFile"
    MRxPreparseName = "MRxPreparseName"
    MRxGetConnectionId = "MRxGetConnectionId"
    # rdbss's own: IRP_MJ_QUERY_OPEN (FastIoQueryOpen) as a routine. What a create for
    # FILE_READ_ATTRIBUTES followed by its close answers, without opening anything: the core
    # calls it for such a pair in a compound (a stat) when nothing of the file is open here
    MRxQueryOpen = "MRxQueryOpen"
    # core <-> connection manager (not mini-redirector routines)
    RxConstructNetRoot = "RxConstructNetRoot"
    RxFinalizeConnections = "RxFinalizeConnections"


if not TYPE_CHECKING:  # fast member access on 3.11 (see enumview); type checkers see the enums
    IrpMj = member_view(IrpMj)
    IrpMn = member_view(IrpMn)
    LowIoOp = member_view(LowIoOp)
    LowIoFlags = member_view(LowIoFlags)
    FileInformationClass = member_view(FileInformationClass)
    FsInformationClass = member_view(FsInformationClass)
    CreateDisposition = member_view(CreateDisposition)
    CreateOptions = member_view(CreateOptions)
    CreateInformation = member_view(CreateInformation)
    Access = member_view(Access)
    ShareAccess = member_view(ShareAccess)
    FileAttributes = member_view(FileAttributes)
    FsctlCode = member_view(FsctlCode)
    RxFlags = member_view(RxFlags)
    Routine = member_view(Routine)
