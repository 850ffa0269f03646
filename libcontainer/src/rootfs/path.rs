//! Path resolution scoped to the container's root: a symlink or `..` inside
//! the rootfs can never lead keel to open, create or mount over a host path.
//! openat2(RESOLVE_IN_ROOT) where the kernel has it (5.6+), an equivalent
//! component walk otherwise.

use crate::sys;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use std::collections::VecDeque;
use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

const MAX_SYMLINKS: usize = 40;

fn cstr(p: &OsStr) -> nix::Result<CString> {
    CString::new(p.as_bytes()).map_err(|_| Errno::EINVAL)
}

/// Opens `path` as if `root` were `/`. `flags` are open(2) flags; O_CLOEXEC
/// is always added. `no_symlinks` refuses any symlink on the way.
pub fn open_in_root(
    root: BorrowedFd,
    path: &Path,
    flags: OFlag,
    no_symlinks: bool,
) -> nix::Result<OwnedFd> {
    let rel = path.strip_prefix("/").unwrap_or(path);
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    let c = cstr(rel.as_os_str())?;
    let mut resolve = sys::RESOLVE_IN_ROOT | sys::RESOLVE_NO_MAGICLINKS;
    if no_symlinks {
        resolve |= 0x04; // RESOLVE_NO_SYMLINKS
    }
    match sys::openat2(root, &c, flags.bits(), 0, resolve) {
        Err(Errno::ENOSYS) => walk(root, rel, flags, no_symlinks),
        r => r,
    }
}

/// The fallback: resolve one component at a time with O_NOFOLLOW, expanding
/// symlinks ourselves and clamping `..` at the root.
fn walk(root: BorrowedFd, rel: &Path, flags: OFlag, no_symlinks: bool) -> nix::Result<OwnedFd> {
    let dup = |fd: BorrowedFd| fd.try_clone_to_owned().map_err(|_| Errno::EBADF);
    let mut todo: VecDeque<OsString> = components(rel);
    let mut stack: Vec<OwnedFd> = vec![dup(root)?];
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        let last = todo.is_empty();
        let Some(cur) = stack.last() else {
            return Err(Errno::EBADF);
        };
        if name == ".." {
            if stack.len() > 1 {
                stack.pop();
            }
            continue;
        }
        let c = cstr(&name)?;
        let fd = nix::fcntl::openat(
            cur.as_fd(),
            c.as_c_str(),
            OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        );
        let fd = fd?;
        let st: FileStat = nix::sys::stat::fstat(&fd)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            if no_symlinks {
                return Err(Errno::ELOOP);
            }
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::ELOOP);
            }
            let target = nix::fcntl::readlinkat(cur.as_fd(), c.as_c_str())?;
            let target = PathBuf::from(target);
            if target.is_absolute() {
                stack.truncate(1);
            }
            for comp in components(&target).into_iter().rev() {
                todo.push_front(comp);
            }
            continue;
        }
        if last {
            if flags.contains(OFlag::O_PATH) {
                return Ok(fd);
            }
            // Re-open the very inode we checked, with the wanted flags.
            let again = nix::fcntl::openat(
                cur.as_fd(),
                c.as_c_str(),
                flags | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let st2 = nix::sys::stat::fstat(&again)?;
            if (st2.st_dev, st2.st_ino) != (st.st_dev, st.st_ino) {
                return Err(Errno::EXDEV);
            }
            return Ok(again);
        }
        stack.push(fd);
    }
    // The path named the root itself (or climbed back to it).
    let Some(top) = stack.last() else {
        return Err(Errno::EBADF);
    };
    let c = cstr(OsStr::new("."))?;
    nix::fcntl::openat(
        top.as_fd(),
        c.as_c_str(),
        flags | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

fn components(p: &Path) -> VecDeque<OsString> {
    p.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect()
}

/// What to create at the end of `make_in_root`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// Creates `path` (and missing parents, 0755) inside `root` and returns an
/// O_PATH fd on it. An existing entry of the other kind is an error.
///
/// As runc (filepath-securejoin): symlinks on the way are followed inside
/// the root, a dangling one included, and what is missing at its target is
/// created. A path that is there costs one lookup.
pub fn make_in_root(root: BorrowedFd, path: &Path, kind: Kind) -> nix::Result<OwnedFd> {
    let flags = if kind == Kind::Dir {
        OFlag::O_PATH | OFlag::O_DIRECTORY
    } else {
        OFlag::O_PATH
    };
    match open_in_root(root, path, flags, false) {
        Err(Errno::ENOENT) => {}
        r => return r,
    }
    let resolved = resolve_in_root(root, path)?;
    let Some((last, parents)) = resolved.split_last() else {
        return Err(Errno::ENOENT);
    };
    // The resolved path has no symlink and no `..`: walk it creating what
    // is missing, never following a link (one swapped in meanwhile makes
    // the walk fail instead of leading out).
    let mut dir = root.try_clone_to_owned().map_err(|_| Errno::EBADF)?;
    for name in parents {
        let c = cstr(name)?;
        let dir_flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        dir = match nix::fcntl::openat(dir.as_fd(), c.as_c_str(), dir_flags, Mode::empty()) {
            Err(Errno::ENOENT) => {
                mkdir_at(dir.as_fd(), &c)?;
                nix::fcntl::openat(dir.as_fd(), c.as_c_str(), dir_flags, Mode::empty())?
            }
            r => r?,
        };
    }
    let c = cstr(last)?;
    if kind == Kind::Dir {
        mkdir_at(dir.as_fd(), &c)?;
    } else {
        // SAFETY: plain openat on a valid dirfd; the new fd is closed at once.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                c.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            )
        };
        match Errno::result(fd) {
            // SAFETY: the fd was just returned to us.
            Ok(fd) => drop(unsafe { OwnedFd::from_raw_fd(fd) }),
            Err(Errno::EEXIST) => {}
            Err(e) => return Err(e),
        }
    }
    open_in_root(root, &resolved.iter().collect::<PathBuf>(), flags, false)
}

fn mkdir_at(dir: BorrowedFd, name: &CString) -> nix::Result<()> {
    match nix::sys::stat::mkdirat(dir, name.as_c_str(), Mode::from_bits_truncate(0o755)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `path` inside `root` with every symlink of its existing part expanded
/// (inside the root) and `..` applied, as filepath-securejoin's SecureJoin
/// computes it: the components of a path that has no symlink, whose tail
/// may not exist yet.
pub fn resolve_in_root(root: BorrowedFd, path: &Path) -> nix::Result<Vec<OsString>> {
    let mut todo = components(path);
    // The resolved components, each with its fd while it exists.
    let mut done: Vec<(OsString, Option<OwnedFd>)> = Vec::new();
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            done.pop();
            continue;
        }
        let parent = match done.last() {
            None => Some(root),
            Some((_, fd)) => fd.as_ref().map(|fd| fd.as_fd()),
        };
        let Some(parent) = parent else {
            // Below a missing directory nothing exists.
            done.push((name, None));
            continue;
        };
        let c = cstr(&name)?;
        let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let fd = match nix::fcntl::openat(parent, c.as_c_str(), flags, Mode::empty()) {
            Err(Errno::ENOENT) => {
                done.push((name, None));
                continue;
            }
            r => r?,
        };
        let st = nix::sys::stat::fstat(&fd)?;
        if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFLNK {
            links += 1;
            if links > MAX_SYMLINKS {
                return Err(Errno::ELOOP);
            }
            let target = PathBuf::from(nix::fcntl::readlinkat(parent, c.as_c_str())?);
            if target.is_absolute() {
                done.clear();
            }
            for comp in components(&target).into_iter().rev() {
                todo.push_front(comp);
            }
            continue;
        }
        done.push((name, Some(fd)));
    }
    Ok(done.into_iter().map(|(name, _)| name).collect())
}

/// `p` cleaned lexically, as a relative path that cannot climb above its
/// start: `..` drops the component before it, `.` and `/` go.
pub fn clean(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// A mount destination given with the rootfs's host path in front names
/// the path after it, as runc 1.3+ reads it (LexicallyStripRoot in
/// createOpenMountpoint); any other path is returned cleaned.
pub fn strip_root(rootfs: &Path, path: &Path) -> PathBuf {
    let clean = |p: &Path| Path::new("/").join(clean(p));
    let (root, path) = (clean(rootfs), clean(path));
    match path.strip_prefix(&root) {
        Ok(rest) if root != Path::new("/") => Path::new("/").join(rest),
        _ => path,
    }
}

/// Whether the last component of `path` is there and is not a directory
/// (a symlink, a file), its parent resolved without following symlinks.
pub fn is_non_directory(root: BorrowedFd, path: &Path) -> bool {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return false;
    };
    let Ok(dir) = open_in_root(root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY, true) else {
        return false;
    };
    cstr(name)
        .and_then(|c| nix::sys::stat::fstatat(&dir, c.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW))
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT != SFlag::S_IFDIR)
}

/// The magic-link path of an fd, for syscalls that take a path (mount(2)):
/// the kernel resolves it to exactly the object the fd holds.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// unlinkat with the parent resolved in root (for replacing /dev/ptmx etc).
pub fn unlink_in_root(root: BorrowedFd, path: &Path) -> nix::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Errno::EINVAL);
    };
    let dir = open_in_root(root, parent, OFlag::O_PATH | OFlag::O_DIRECTORY, false)?;
    let c = cstr(name)?;
    match nix::unistd::unlinkat(
        dir.as_fd(),
        c.as_c_str(),
        nix::unistd::UnlinkatFlags::NoRemoveDir,
    ) {
        Ok(()) | Err(Errno::ENOENT) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The parent directory (resolved in root) and final name of `path`.
pub fn parent_in_root(root: BorrowedFd, path: &Path) -> nix::Result<(OwnedFd, CString)> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(Errno::EINVAL);
    };
    let dir = make_in_root(root, parent, Kind::Dir)?;
    Ok((dir, cstr(name)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> (tempdir::Dir, OwnedFd) {
        let d = tempdir::Dir::new();
        std::fs::create_dir_all(d.0.join("a/b")).unwrap();
        symlink("/a", d.0.join("abs")).unwrap();
        symlink("../../../../..", d.0.join("a/up")).unwrap();
        symlink("/etc/passwd", d.0.join("a/passwd")).unwrap();
        let fd = nix::fcntl::open(&d.0, OFlag::O_PATH | OFlag::O_DIRECTORY, Mode::empty()).unwrap();
        (d, fd)
    }

    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Dir {
                let p = std::env::temp_dir().join(format!(
                    "keel-path-test-{}-{:?}",
                    std::process::id(),
                    std::thread::current().id()
                ));
                let _ = std::fs::remove_dir_all(&p);
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn ino(fd: &OwnedFd) -> u64 {
        nix::sys::stat::fstat(fd).unwrap().st_ino
    }

    #[test]
    fn symlinks_stay_inside_root() {
        let (d, root) = tree();
        for resolve in [true, false] {
            let open = |p: &str| {
                if resolve {
                    open_in_root(root.as_fd(), Path::new(p), OFlag::O_PATH, false)
                } else {
                    walk(
                        root.as_fd(),
                        Path::new(p).strip_prefix("/").unwrap_or(Path::new(p)),
                        OFlag::O_PATH,
                        false,
                    )
                }
            };
            let a = std::fs::metadata(d.0.join("a")).unwrap();
            use std::os::unix::fs::MetadataExt;
            assert_eq!(ino(&open("/abs").unwrap()), a.ino());
            let top = std::fs::metadata(&d.0).unwrap().ino();
            assert_eq!(ino(&open("/a/up").unwrap()), top);
            assert_eq!(ino(&open("/../../..").unwrap()), top);
            // /etc/passwd of the host is not inside the test root.
            assert_eq!(open("/a/passwd").unwrap_err(), Errno::ENOENT);
        }
    }

    #[test]
    fn make_follows_dangling_links_inside_root() {
        let (d, root) = tree();
        symlink("/made/sub", d.0.join("dangling")).unwrap();
        symlink("../../../../up-made", d.0.join("a/climb")).unwrap();
        symlink("/file-made", d.0.join("a/tofile")).unwrap();
        make_in_root(root.as_fd(), Path::new("/dangling"), Kind::Dir).unwrap();
        assert!(d.0.join("made/sub").is_dir());
        make_in_root(root.as_fd(), Path::new("/a/climb/in"), Kind::Dir).unwrap();
        assert!(d.0.join("up-made/in").is_dir());
        make_in_root(root.as_fd(), Path::new("/a/tofile"), Kind::File).unwrap();
        assert!(d.0.join("file-made").is_file());
        assert_eq!(
            resolve_in_root(root.as_fd(), Path::new("/abs/missing/../x")).unwrap(),
            ["a", "x"]
        );
    }

    #[test]
    fn rootfs_prefix_is_stripped() {
        let r = Path::new("/b/rootfs/");
        assert_eq!(strip_root(r, Path::new("/b/rootfs/x/y")), Path::new("/x/y"));
        assert_eq!(strip_root(r, Path::new("/b/rootfs")), Path::new("/"));
        assert_eq!(
            strip_root(r, Path::new("/b/rootfsx")),
            Path::new("/b/rootfsx")
        );
        assert_eq!(strip_root(r, Path::new("x/../y")), Path::new("/y"));
    }

    #[test]
    fn make_creates_inside_root_only() {
        let (d, root) = tree();
        make_in_root(root.as_fd(), Path::new("/abs/new/dir"), Kind::Dir).unwrap();
        assert!(d.0.join("a/new/dir").is_dir());
        make_in_root(root.as_fd(), Path::new("/a/up/file"), Kind::File).unwrap();
        assert!(d.0.join("file").is_file());
    }
}
