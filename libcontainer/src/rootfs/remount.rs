//! Changing the flags of a mount that exists (a bind, a read-only path, the
//! root), as runc 1.2+ does (libcontainer/rootfs_linux.go, mountToRootfs):
//! exactly the flags asked for first; if the kernel refuses because the
//! mount came from a more privileged mount namespace and some of its flags
//! are locked, again with the locked flags it already has, unless the
//! config asked to clear one of those.

use nix::mount::MsFlags;
use std::path::Path;

/// mount_setattr(2)'s read-only attribute.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;

/// The atime modes, of which a mount has exactly one.
const ATIME_MODES: MsFlags = MsFlags::MS_NOATIME
    .union(MsFlags::MS_RELATIME)
    .union(MsFlags::MS_STRICTATIME);
const ATIME_FLAGS: MsFlags = ATIME_MODES.union(MsFlags::MS_NODIRATIME);

/// The flags the kernel locks on mounts a less privileged mount namespace
/// inherits (MNT_LOCK_* in the kernel).
const LOCKABLE: MsFlags = MsFlags::MS_RDONLY
    .union(MsFlags::MS_NODEV)
    .union(MsFlags::MS_NOEXEC)
    .union(MsFlags::MS_NOSUID)
    .union(ATIME_FLAGS);

/// statvfs(3)'s f_flag bits (Linux's ST_*), as mount(2) flags.
pub fn flags_of_statvfs(f_flag: libc::c_ulong) -> MsFlags {
    let mut out = MsFlags::empty();
    for (st, ms) in [
        (0x0001, MsFlags::MS_RDONLY),
        (0x0002, MsFlags::MS_NOSUID),
        (0x0004, MsFlags::MS_NODEV),
        (0x0008, MsFlags::MS_NOEXEC),
        (0x0010, MsFlags::MS_SYNCHRONOUS),
        (0x0040, MsFlags::MS_MANDLOCK),
        (0x0400, MsFlags::MS_NOATIME),
        (0x0800, MsFlags::MS_NODIRATIME),
        (0x1000, MsFlags::MS_RELATIME),
        (0x2000, MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)),
    ] {
        if f_flag & st != 0 {
            out |= ms;
        }
    }
    // Strict atime is no stored flag: it is the mode when no other is set.
    if !out.intersects(ATIME_MODES) {
        out |= MsFlags::MS_STRICTATIME;
    }
    out
}

/// The flags of the retry after a refused remount, or None when the
/// refusal stands: a locked flag the config asked to clear, or an atime
/// mode asked for that differs from the locked one (the kernel would
/// silently keep the old one).
pub fn retry_flags(set: MsFlags, cleared: MsFlags, current: MsFlags) -> Option<MsFlags> {
    if current.intersects(cleared & LOCKABLE) {
        return None;
    }
    if set.intersects(ATIME_FLAGS) && (set & ATIME_FLAGS) != (current & ATIME_FLAGS) {
        return None;
    }
    Some(set | (current & LOCKABLE))
}

/// Remounts the mount at `path` (a magic link to it, usually) with flags
/// `set`; `cleared` are those the config asked to clear.
pub fn bind(path: &Path, set: MsFlags, cleared: MsFlags) -> nix::Result<()> {
    let base = MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    let first = nix::mount::mount(None::<&str>, path, None::<&str>, base | set, None::<&str>);
    let Err(refused) = first else {
        return Ok(());
    };
    let current = flags_of_statvfs(raw_flags(path).ok_or(refused)?);
    match retry_flags(set, cleared, current) {
        Some(flags) => {
            nix::mount::mount(None::<&str>, path, None::<&str>, base | flags, None::<&str>)
        }
        None => Err(refused),
    }
}

/// statvfs(3)'s f_flag for `path`, every bit kept (nix's statvfs drops the
/// ones its libc does not name: musl's ST_RELATIME).
fn raw_flags(path: &Path) -> Option<libc::c_ulong> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: a valid C string and a pointer to writable statvfs storage,
    // read only when the call succeeds.
    if unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statvfs succeeded and filled it.
    Some(unsafe { st.assume_init() }.f_flag)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statvfs_flags() {
        assert_eq!(
            flags_of_statvfs(0x1 | 0x2 | 0x1000),
            MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_RELATIME
        );
        assert_eq!(flags_of_statvfs(0), MsFlags::MS_STRICTATIME);
        assert_eq!(
            flags_of_statvfs(0x2000 | 0x400),
            MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW) | MsFlags::MS_NOATIME
        );
    }

    #[test]
    fn locked_flags_are_kept_unless_cleared() {
        let current = MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_RELATIME;
        // `nosuid` on a read-only, nodev source: both kept.
        assert_eq!(
            retry_flags(MsFlags::MS_NOSUID, MsFlags::empty(), current),
            Some(MsFlags::MS_NOSUID | current)
        );
        // `rw` asked for on a locked read-only mount: refused.
        assert_eq!(
            retry_flags(MsFlags::empty(), MsFlags::MS_RDONLY, current),
            None
        );
        // `exec` is not locked here: fine.
        assert_eq!(
            retry_flags(MsFlags::empty(), MsFlags::MS_NOEXEC, current),
            Some(current)
        );
        // An atime mode other than the locked one: refused.
        assert_eq!(
            retry_flags(MsFlags::MS_NOATIME, MsFlags::empty(), current),
            None
        );
        assert_eq!(
            retry_flags(MsFlags::MS_RELATIME, MsFlags::empty(), current),
            Some(current)
        );
    }
}
