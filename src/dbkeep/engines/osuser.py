"""The OS users the engines run as, and letting each reach its own directories.

PostgreSQL refuses to run as root, and an engine should not run with dbkeep's privileges anyway.
When dbkeep runs as root, each cluster's engine runs as an unprivileged system user of its own
(``dbk-`` and a hash of the cluster's directory, made by :func:`cluster_user`), so whatever one
cluster's engine can be made to do as its OS user (a master who found a way to write files or
run programs) reaches that cluster's files only. Those users share one group, the group of the
system user ``dbkeep`` (:func:`engine_user`), which is only let *traverse* the state directory
down to ``clusters/``. A cluster user's comment field names its cluster directory: users whose
directory is gone (a state directory deleted without deleting its clusters) are removed the next
time a cluster user is made. Run as another user, dbkeep runs every engine as that user.

The state directory may be a root-owned 0700 directory (``mktemp -d``). The engine user must be
able to *traverse* the path down to its own cluster directory — and nothing more. We add a POSIX
ACL entry ``u:<engine user>:x`` on each path component it cannot already traverse. The ACL is
written directly as the ``system.posix_acl_access`` extended attribute (the format the kernel
and ``setfacl`` share, see acl(5) and linux/posix_acl_xattr.h), so the ``acl`` package is not
needed. Where the filesystem has no ACLs, we fall back to adding ``o+x`` on that component and
log it.
"""

from __future__ import annotations

import errno
import grp
import hashlib
import logging
import os
import pwd
import stat
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

from dbkeep.errors import EngineError

log = logging.getLogger("dbkeep.engines")

SYSTEM_USER = "dbkeep"

_ACL_XATTR = "system.posix_acl_access"
_ACL_VERSION = 2
_USER_OBJ, _USER, _GROUP_OBJ, _GROUP, _MASK, _OTHER = 0x01, 0x02, 0x04, 0x08, 0x10, 0x20
_UNDEFINED_ID = 0xFFFFFFFF
_X = 1


@dataclass(frozen=True)
class EngineUser:
    """The OS identity of engine processes, and of dbkeep itself (who connects to them)."""

    name: str
    uid: int
    gid: int
    # dbkeep's own OS user: the peer the engines see on their sockets.
    dbkeep_name: str
    dbkeep_uid: int
    # supplementary groups the engine runs with (a cluster user: the engines' shared group)
    groups: tuple[int, ...] = ()

    @property
    def needs_switch(self) -> bool:
        return self.uid != os.geteuid()

    def command_prefix(self) -> list[str]:
        """argv prefix that runs a program as this user (util-linux ``setpriv`` execs in place,
        so the child's pid is the engine's; works under asyncio and uvloop alike)."""
        if not self.needs_switch:
            return []
        groups = f"--groups={','.join(map(str, self.groups))}" if self.groups else "--clear-groups"
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", groups, "--"]

    def chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            os.chown(path, self.uid, self.gid, follow_symlinks=False)


def _dbkeep_identity() -> tuple[str, int]:
    uid = os.geteuid()
    try:
        return pwd.getpwuid(uid).pw_name, uid
    except KeyError:
        raise EngineError(f"the current uid {uid} has no name in the user database") from None


def _run_user_tool(argv: list[str], what: str, ok: tuple[int, ...] = (0,)) -> None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EngineError(f"cannot {what}: {exc}") from None
    if proc.returncode not in ok:
        raise EngineError(f"cannot {what}", log_line=(proc.stderr or proc.stdout).strip())


def _add_system_user(name: str, *extra: str) -> None:
    """``useradd --system`` without a home or a login shell; 9 (it exists) is a concurrent
    creation and fine."""
    _run_user_tool(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", *extra, name],
                   f"create OS user {name!r}", ok=(0, 9))


def ensure_system_user(name: str = SYSTEM_USER) -> None:
    """Create the unprivileged system user ``name`` if missing (root only)."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    if os.geteuid() != 0:
        raise EngineError(f"OS user {name!r} does not exist and only root can create it")
    _add_system_user(name)
    log.info("created system user %s for the engines", name)


CLUSTER_USER_PREFIX = "dbk-"
_CLUSTER_USER_COMMENT = "dbkeep engine "


def _cluster_user_name(root: Path) -> str:
    return CLUSTER_USER_PREFIX + hashlib.sha256(str(root).encode()).hexdigest()[:16]


def cluster_user(base: EngineUser, root: Path, *, create: bool = True) -> EngineUser | None:
    """The OS user of the cluster whose directory is ``root`` (made if missing when ``create``).

    ``base`` is :func:`engine_user`: when it needs no switch (dbkeep is not root) it is every
    cluster's user. None when the user does not exist and ``create`` is false."""
    if not base.needs_switch:
        return base
    root = root.absolute()
    name = _cluster_user_name(root)
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        if not create:
            return None
        remove_stale_cluster_users()
        _add_system_user(name, "--user-group", "--comment", _CLUSTER_USER_COMMENT + str(root))
        log.info("created system user %s for the engine in %s", name, root)
        pw = pwd.getpwnam(name)
    if pw.pw_gecos != _CLUSTER_USER_COMMENT + str(root):
        raise EngineError(f"OS user {name!r} exists but is not the engine user of {root}")
    return EngineUser(name=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid, dbkeep_name=base.dbkeep_name,
                      dbkeep_uid=base.dbkeep_uid, groups=(base.gid,))


def remove_cluster_user(user: EngineUser) -> None:
    """Delete a cluster's OS user (and its group) once its cluster is gone."""
    if not user.name.startswith(CLUSTER_USER_PREFIX) or os.geteuid() != 0:
        return
    _run_user_tool(["userdel", user.name], f"remove OS user {user.name!r}", ok=(0, 6))  # 6: already gone
    log.info("removed system user %s", user.name)


def remove_stale_cluster_users() -> list[str]:
    """Delete the cluster users whose cluster directory no longer exists; returns their names."""
    removed = []
    for pw in pwd.getpwall():
        if not pw.pw_name.startswith(CLUSTER_USER_PREFIX) or not pw.pw_gecos.startswith(_CLUSTER_USER_COMMENT):
            continue
        root = Path(pw.pw_gecos[len(_CLUSTER_USER_COMMENT):])
        if root.is_absolute() and not root.exists() and _cluster_user_name(root) == pw.pw_name:
            try:
                _run_user_tool(["userdel", pw.pw_name], f"remove stale OS user {pw.pw_name!r}", ok=(0, 6))
                removed.append(pw.pw_name)
            except EngineError as exc:
                log.warning("%s", exc)
    if removed:
        log.info("removed %d engine user(s) whose cluster directories are gone: %s", len(removed), ", ".join(removed))
    return removed


def engine_user(name: str = SYSTEM_USER) -> EngineUser:
    """The engine identity: ``name`` (created if needed) when root, else the current user."""
    me, my_uid = _dbkeep_identity()
    if os.geteuid() == 0:
        ensure_system_user(name)
        pw = pwd.getpwnam(name)
        return EngineUser(name=pw.pw_name, uid=pw.pw_uid, gid=pw.pw_gid, dbkeep_name=me, dbkeep_uid=my_uid)
    return EngineUser(name=me, uid=my_uid, gid=os.getegid(), dbkeep_name=me, dbkeep_uid=my_uid)


# --- traversal --------------------------------------------------------------------------------

def _user_groups(user: EngineUser) -> set[int]:
    groups = {user.gid, *user.groups}
    try:
        groups.update(g.gr_gid for g in grp.getgrall() if user.name in g.gr_mem)
    except OSError:
        pass
    return groups


def _read_acl(path: Path) -> list[tuple[int, int, int]] | None:
    try:
        raw = os.getxattr(path, _ACL_XATTR, follow_symlinks=False)
    except OSError as exc:
        if exc.errno in (errno.ENODATA, getattr(errno, "ENOATTR", errno.ENODATA)):
            return None
        raise
    if len(raw) < 4 or (len(raw) - 4) % 8 or struct.unpack_from("<I", raw)[0] != _ACL_VERSION:
        raise OSError(errno.EINVAL, f"unreadable ACL on {path}")
    return [struct.unpack_from("<HHI", raw, off) for off in range(4, len(raw), 8)]


def _can_traverse(path: Path, user: EngineUser, groups: set[int]) -> bool:
    st = os.stat(path)
    if user.uid == 0:
        return True
    if st.st_uid == user.uid:
        return bool(st.st_mode & stat.S_IXUSR)
    acl = _read_acl(path)
    if acl:
        mask = next((p for t, p, _ in acl if t == _MASK), 7)
        for tag, perm, ident in acl:
            if tag == _USER and ident == user.uid:
                return bool(perm & mask & _X)
        group_perms = [p for t, p, i in acl
                       if (t == _GROUP_OBJ and st.st_gid in groups) or (t == _GROUP and i in groups)]
        if group_perms:
            return any(p & mask & _X for p in group_perms)
        return bool(st.st_mode & stat.S_IXOTH)
    if st.st_gid in groups:
        return bool(st.st_mode & stat.S_IXGRP)
    return bool(st.st_mode & stat.S_IXOTH)


def _add_x(path: Path, tag: int, ident: int) -> None:
    """Add (or widen) ``u:ident:x`` / ``g:ident:x`` in the access ACL, recomputing the mask like
    setfacl does."""
    st = os.stat(path)
    acl = _read_acl(path)
    if acl is None:
        mode = st.st_mode
        acl = [(_USER_OBJ, (mode >> 6) & 7, _UNDEFINED_ID), (_GROUP_OBJ, (mode >> 3) & 7, _UNDEFINED_ID),
               (_OTHER, mode & 7, _UNDEFINED_ID)]
    entries = {(t, i): p for t, p, i in acl if t != _MASK}
    entries[(tag, ident)] = entries.get((tag, ident), 0) | _X
    mask = 0
    for (t, _i), p in entries.items():
        if t in (_USER, _GROUP_OBJ, _GROUP):
            mask |= p
    entries[(_MASK, _UNDEFINED_ID)] = mask
    data = struct.pack("<I", _ACL_VERSION) + b"".join(
        struct.pack("<HHI", t, p, i) for (t, i), p in sorted(entries.items()))
    os.setxattr(path, _ACL_XATTR, data, follow_symlinks=False)


def grant_traverse(target: Path, user: EngineUser, *, group_only: bool = False) -> None:
    """Let ``user`` traverse every directory from ``/`` down to ``target`` (x only, never r/w).

    Components it can already traverse are untouched; others get an ACL entry ``u:user:x`` (with
    ``group_only``: ``g:<user's group>:x``, for every member of that group), or ``o+x`` where the
    filesystem has no ACLs (logged)."""
    if not user.needs_switch:
        return
    # group_only: judge as a member of the group with no uid of its own (no owner or u: entry applies)
    who = EngineUser(name=user.name, uid=_UNDEFINED_ID - 1, gid=user.gid, dbkeep_name="", dbkeep_uid=-1) \
        if group_only else user
    groups = {user.gid} if group_only else _user_groups(user)
    tag, ident, label = (_GROUP, user.gid, "g") if group_only else (_USER, user.uid, "u")
    target = target.resolve()
    for comp in [*reversed(target.parents), target]:
        if _can_traverse(comp, who, groups):
            continue
        try:
            _add_x(comp, tag, ident)
            log.info("ACL %s:%s:x added on %s so the engines can reach their directories", label, user.name, comp)
        except OSError as exc:
            if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP, errno.EINVAL):
                raise EngineError(f"cannot let OS user {user.name!r} traverse {comp}: {exc.strerror}") from None
            os.chmod(comp, stat.S_IMODE(os.stat(comp).st_mode) | stat.S_IXOTH)
            log.warning("no POSIX ACLs on %s: added o+x so OS user %s can traverse it", comp, user.name)
