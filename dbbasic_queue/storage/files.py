"""Files in the queue's directory, which another user may be able to write.

The README's shared set-up lets the web app's user write ``data/`` while root runs the
worker, so any name there may hold something that user planted: a symbolic link to
``/etc/nologin`` (which a root process opening ``queue.lock`` with O_CREAT would create), to
another app's file (which an append would write), or a FIFO (which open() would wait on
forever). So every file the queue opens in its directory is opened with O_NOFOLLOW and
O_NONBLOCK and refused with a QueueError unless it is a regular file; the rest of the
package opens none itself.

Also here: a lock that is sure to hold the file now at its path (someone may delete or
replace a lock file at any moment), and the metadata a replacement, or a new file beside the
queue file, takes from it (owner, mode, extended attributes, among them POSIX ACLs).

Every flock the package takes goes through ``flock`` and ``unflock`` here, for forks. An
flock belongs to the open file description, which a forked child shares: a child forked
while another thread holds a lock (a handler using multiprocessing, say) would keep it,
after its parent closed its descriptor or died, for as long as the child lives. So every
lock is released with an explicit LOCK_UN (which lets go for the child too), and the child
of a fork lets go of its copies at once (``os.register_at_fork``; closing a copy never
unlocks the parent's lock). A fork made by C code without Python's fork hooks is not seen.
"""

import contextlib
import errno
import fcntl
import os
import stat
from typing import Optional, Set, Tuple

from ..errors import QueueError
from ..log import logger


# O_NONBLOCK makes open() of a FIFO return at once; it changes nothing for regular files.
_OWN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NOT_OPENABLE = (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENODEV)
_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
TEMP_PREFIX = ".dbbasic-queue-"  # never dbbasic-tsv's own "<table>.tmp", which it renames blindly
_warned_attributes: Set[tuple] = set()  # (directory, attributes) lost and logged
_locked: Set[int] = set()  # descriptors through which this process holds an flock


def flock(fd: int, operation: int = fcntl.LOCK_EX) -> None:
    """Take an flock on ``fd`` (``operation`` as for fcntl.flock), noted for forks."""
    fcntl.flock(fd, operation)
    _locked.add(fd)


def unflock(fd: int) -> None:
    """Release the flock taken on ``fd`` with ``flock``; ``fd`` stays open."""
    _locked.discard(fd)  # first: a set never names a descriptor that may be closed and reused
    fcntl.flock(fd, fcntl.LOCK_UN)


def _let_go_in_child() -> None:
    # Each copy is replaced by /dev/null rather than closed: objects of the parent's other
    # threads may still close these numbers, which must not close another file of the child.
    if not _locked:
        return
    null = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
    for fd in _locked:
        with contextlib.suppress(OSError):
            os.dup2(null, fd, inheritable=False)
    os.close(null)
    _locked.clear()


os.register_at_fork(after_in_child=_let_go_in_child)


def open_own(path: str, flags: int, mode: int = 0o666) -> int:
    """Open ``path`` with ``flags``, never through a symbolic link and never waiting on a
    FIFO. FileNotFoundError and FileExistsError pass through; the caller checks what it
    opened with ``check_regular``."""
    try:
        return os.open(path, flags | _OWN, mode)
    except OSError as error:
        if error.errno in _NOT_OPENABLE:
            raise refusal(path) from None
        raise


def key_digest(key: str) -> str:
    """The part of a file's name that stands for a user's key (a concurrency or rate key):
    24 hex digits of its SHA-256, so any key makes a short, safe name."""
    import hashlib  # at the first key: a run whose jobs have none never loads OpenSSL
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def temporary_file(directory) -> Tuple[int, str]:
    """A new file for a rewrite to rename into place: (descriptor, path), the path
    ``<directory>/.dbbasic-queue-<random>.tmp``, made as tempfile.mkstemp makes one
    (exclusively, mode 0600, never through a link), without the imports tempfile brings
    into every process that enqueues."""
    while True:
        path = os.path.join(directory, f"{TEMP_PREFIX}{os.urandom(8).hex()}.tmp")
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _OWN, 0o600), path
        except FileExistsError:  # one chance in 2**64: another name
            continue


def check_regular(fd: int, path: str) -> os.stat_result:
    """The stat of the file open at ``fd``; QueueError (and ``fd`` closed) if it is not a
    regular file."""
    try:
        status = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(status.st_mode):
        os.close(fd)
        raise refusal(path)
    return status


def refusal(path: str) -> QueueError:
    """The error for a name in the queue's directory that holds something other than the
    regular file the queue expects there, saying what it is and what to do."""
    try:
        found = os.lstat(path)
    except OSError:
        return QueueError(f"{path} cannot be opened without following a symbolic link; "
                          f"check the directories on its way")
    advice = (f"remove it and check who can write {os.path.dirname(path)} (see 'Sharing one "
              f"queue between users' in the README)")
    if stat.S_ISLNK(found.st_mode):
        try:
            target = repr(os.readlink(path))  # repr: the name may hold terminal escapes
        except OSError:
            target = "an unreadable target"
        return QueueError(f"{path} is a symbolic link (to {target}), not a regular file: the "
                          f"queue never follows links in its directory, where another user "
                          f"could plant one to make this process write elsewhere; {advice}; "
                          f"to keep the queue elsewhere, point the queue at that path instead")
    kind = next((name for test, name in _KINDS if test(found.st_mode)), "not a file")
    return QueueError(f"{path} is {kind}, not a regular file: the queue will not open it; "
                      f"{advice}")


def _identity(status: os.stat_result) -> Tuple[int, int]:
    return status.st_dev, status.st_ino


def is_at(path: str, status: os.stat_result) -> bool:
    """Whether the file ``status`` describes (held open by the caller, so its inode number
    cannot be reused) is the one at ``path`` now, not a link to it or a replacement."""
    try:
        return _identity(os.lstat(path)) == _identity(status)
    except FileNotFoundError:
        return False


def lock_current(path: str, flags: int, create: bool = False) -> Tuple[int, os.stat_result]:
    """Open ``path``, take an exclusive flock on it and return the descriptor and the stat
    of the file locked, which is then the file at ``path``. With ``create``, a missing file
    is created (empty, with O_EXCL: a name that appears meanwhile, another creator's file or
    a planted link, is never taken for a new file; the loop opens or refuses what is there).

    A lock file deleted or replaced while another process held it (by hand, by a clean-up
    script) would otherwise let the next process lock a new file while the holder of the old
    one still writes: two writers at once, and lost jobs. So after the flock the file locked
    must still be the one at the path; if not, it locks again. A file deleted or renamed
    over has no name left (``st_nlink`` 0), so the fstat that tells the size tells this
    too, without a lookup of the path (the hot path of enqueue); a file with other hard
    links is compared with the path.
    """
    while True:
        try:
            fd = os.open(path, flags | _OWN, 0o666)  # open_own, inline: the hot path
        except FileNotFoundError:
            if not create:
                raise
            with contextlib.suppress(FileExistsError):
                os.close(open_own(path, flags | os.O_CREAT | os.O_EXCL))
            continue
        except OSError as error:
            if error.errno in _NOT_OPENABLE:
                raise refusal(path) from None
            raise
        status = _locked_status(fd)
        if not stat.S_ISREG(status.st_mode):
            unlock(fd)
            raise refusal(path)
        if _named(path, status):
            return fd, status
        unlock(fd)


def _locked_status(fd: int) -> os.stat_result:
    """The stat of ``fd`` once flocked; closed if the flock or the fstat fails."""
    try:
        flock(fd)
        return os.fstat(fd)
    except BaseException:
        unlock(fd)
        raise


def _named(path: str, status: os.stat_result) -> bool:
    """Whether the file ``status`` describes (held open) still has its name ``path``."""
    return status.st_nlink == 1 or (status.st_nlink > 1 and is_at(path, status))


def lock_kept(kept: Optional[Tuple[int, os.stat_result]], path: str, flags: int,
              create: bool = False, after: bool = True) -> Tuple[int, os.stat_result]:
    """``lock_current`` through a descriptor kept open from an earlier lock of ``path``:
    ``kept`` is (descriptor, the stat it had then), or None. The descriptor is locked and
    returned while it is still that file (not another one given its number, after a close
    this package did not make) and that file is still the one at ``path`` (a name left: see
    lock_current); else the file at ``path`` now is locked. A descriptor that is no longer
    that file is left alone, never locked nor closed: it is not this package's any more.
    Without ``after``, the name is checked before the flock only (as lock_file, for a lock
    file whose holder's checks are made through another file), and the stat returned is
    that earlier one."""
    if kept is not None:
        fd, known = kept
        try:
            now = os.fstat(fd)
        except OSError:
            now = None
        if now is not None and _identity(now) == _identity(known):
            if not after:
                if now.st_nlink:
                    return flocked(fd), now
                os.close(fd)  # deleted: the file at the path now is another
                return lock_current(path, flags, create)
            status = _locked_status(fd)
            if _named(path, status):
                return fd, status
            unlock(fd)
    return lock_current(path, flags, create)


def unlock(fd: int) -> None:
    """Release the flock on ``fd`` and close it. Unlocked first, explicitly: a descriptor
    duplicated from ``fd`` (an index kept open, a process forked meanwhile) would otherwise
    keep holding the lock."""
    try:
        unflock(fd)
    finally:
        os.close(fd)


def lock_file(path: str) -> int:
    """An exclusive flock on a lock file, created (and its directory) if missing, never
    through a symbolic link nor waiting on a FIFO. Not compared with the path afterwards:
    for an append, the flock on the table file does that job (see table.py)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | _OWN, 0o666)
    except OSError:
        return take_lock(path)[0]  # creates the directory, or says what is in the way
    return flocked(fd)


def flocked(fd: int) -> int:
    """``fd`` with an exclusive flock taken (waiting for it); closed if that fails, or is
    interrupted, so no descriptor is left behind. Release it with ``unlock``."""
    try:
        flock(fd)
    except BaseException:
        unlock(fd)
        raise
    return fd


def take_lock(path: str) -> Tuple[int, os.stat_result]:
    """``lock_current`` on a lock file, created (and its directory) if missing."""
    try:
        return lock_current(path, os.O_RDONLY | os.O_CREAT)
    except FileNotFoundError:  # no directory yet
        os.makedirs(os.path.dirname(path), exist_ok=True)
        return lock_current(path, os.O_RDONLY | os.O_CREAT)


class HeldLock:
    """An exclusive flock on a lock file, which can tell when its file was deleted or
    replaced since (then it no longer excludes the processes that opened the new one)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.fd, self.status = take_lock(path)

    def lost(self) -> bool:
        return not is_at(self.path, self.status)

    def relock(self) -> None:
        """Lock the file now at the path (the old one is held until then)."""
        fd, status = take_lock(self.path)
        unlock(self.fd)
        self.fd, self.status = fd, status

    def release(self) -> None:
        unlock(self.fd)


def keep_mode_and_owner(fd: int, original: os.stat_result, path, attributes_of=None) -> None:
    """Give the file open at ``fd`` the owner and mode of ``original`` (the file at ``path``
    it replaces or joins), and the extended attributes (POSIX ACLs among them) of the file
    ``attributes_of`` (a descriptor, or a path whose symbolic link is not followed), if given:
    a file written by the cron user must stay as shared with the web app's user as it was."""
    try:
        os.fchown(fd, original.st_uid, original.st_gid)
    except PermissionError:
        mine = os.fstat(fd)
        if (mine.st_uid, mine.st_gid) != (original.st_uid, original.st_gid):
            logger().warning("%s now belongs to uid %d gid %d (it was %d:%d): a process of this user "
                           "may not append to it any more; see 'Sharing one queue between users' "
                           "in the README", path, mine.st_uid, mine.st_gid,
                           original.st_uid, original.st_gid)
    if attributes_of is not None:
        _copy_attributes(attributes_of, fd, str(path))
    os.fchmod(fd, original.st_mode & 0o7777)  # after fchown, which may clear setgid


def _copy_attributes(source, fd: int, path: str) -> None:
    # Best effort: some file systems have no extended attributes, and a user may not set
    # some namespaces (security.*); the rewrite goes on, with one warning per file. An
    # attribute the new file already has with the same value (an SELinux label given by
    # the directory, say) is left alone, so that case is no warning.
    nofollow = {} if isinstance(source, int) else {"follow_symlinks": False}
    try:
        names, mine = set(os.listxattr(source, **nofollow)), set(os.listxattr(fd))
    except FileNotFoundError:
        return
    except OSError as error:
        if error.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            _warn_attributes(path, [f"all ({error.strerror})"])
        return
    failed = []
    for name in sorted(names):
        try:
            value = os.getxattr(source, name, **nofollow)
            if name not in mine or os.getxattr(fd, name) != value:
                os.setxattr(fd, name, value)
        except OSError as error:
            if error.errno not in (errno.ENODATA, errno.ENOENT):  # gone meanwhile
                failed.append(f"{name} ({error.strerror})")
    for name in sorted(mine - names):  # say, an ACL inherited from the directory's default
        try:
            os.removexattr(fd, name)
        except OSError as error:
            failed.append(f"{name} ({error.strerror}, on the new file only)")
    if failed:
        _warn_attributes(path, failed)


def _warn_attributes(path: str, failed) -> None:
    said = (os.path.dirname(str(path)), tuple(failed))  # once for the queue's files together
    if said not in _warned_attributes:
        _warned_attributes.add(said)
        logger().warning("%s: a rewrite could not carry over the extended attributes %s, so "
                       "the file may have lost an ACL or another mark set on it; set it again "
                       "on the file, or use group ownership to share the queue (see 'Sharing "
                       "one queue between users' in the README); said once", path,
                       ", ".join(failed))


def fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` survive a power loss (the entry must be on disk)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.EBADF):  # some file systems refuse it
            raise
    finally:
        os.close(fd)
