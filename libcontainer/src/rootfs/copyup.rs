//! `tmpcopyup` (runc's extension, which podman and CRI-O use for tmpfs
//! mounts such as /tmp of a `--read-only` container): what the image has at
//! the destination is copied into the fresh tmpfs mounted over it.
//!
//! Both trees are walked through directory fds with *at calls that never
//! follow a symlink, so an image's links cannot point the copy elsewhere.

use crate::error::{Result, SysContext};
use nix::dir::Dir;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstatat, mkdirat, mknodat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, Gid, Uid};
use std::os::fd::{AsFd, BorrowedFd};

const DIR: OFlag = OFlag::O_RDONLY
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

/// Copies the contents of directory `from` into directory `to`.
pub fn copy_dir(from: BorrowedFd, to: BorrowedFd) -> Result<()> {
    // The listing reads through a dup; `from` itself only serves *at calls.
    let read = || "tmpcopyup: read the directory".to_string();
    let mut dir = Dir::from_fd(nix::unistd::dup(from).ctx(read)?).ctx(read)?;
    let names: Vec<_> = dir
        .iter()
        .filter_map(|e| e.ok())
        .filter(|e| !matches!(e.file_name().to_bytes(), b"." | b".."))
        .map(|e| e.file_name().to_owned())
        .collect();
    for name in names {
        let what = || format!("tmpcopyup: {}", name.to_string_lossy());
        let st = fstatat(from, name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW).ctx(what)?;
        let mode = Mode::from_bits_truncate(st.st_mode & 0o7777);
        match SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) {
            SFlag::S_IFDIR => {
                mkdirat(to, name.as_c_str(), Mode::S_IRWXU).ctx(what)?;
                let src =
                    nix::fcntl::openat(from, name.as_c_str(), DIR, Mode::empty()).ctx(what)?;
                let dst = nix::fcntl::openat(to, name.as_c_str(), DIR, Mode::empty()).ctx(what)?;
                copy_dir(src.as_fd(), dst.as_fd())?;
            }
            SFlag::S_IFREG => {
                let src = nix::fcntl::openat(
                    from,
                    name.as_c_str(),
                    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                )
                .ctx(what)?;
                let dst = nix::fcntl::openat(
                    to,
                    name.as_c_str(),
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_CLOEXEC,
                    Mode::S_IRUSR | Mode::S_IWUSR,
                )
                .ctx(what)?;
                let (mut src, mut dst) = (std::fs::File::from(src), std::fs::File::from(dst));
                std::io::copy(&mut src, &mut dst).ctx(what)?;
            }
            SFlag::S_IFLNK => {
                let target = nix::fcntl::readlinkat(from, name.as_c_str()).ctx(what)?;
                nix::unistd::symlinkat(target.as_os_str(), to, name.as_c_str()).ctx(what)?;
            }
            kind => {
                mknodat(to, name.as_c_str(), kind, mode, st.st_rdev).ctx(what)?;
            }
        }
        fchownat(
            to,
            name.as_c_str(),
            Some(Uid::from_raw(st.st_uid)),
            Some(Gid::from_raw(st.st_gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .ctx(what)?;
        if !matches!(
            SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()),
            SFlag::S_IFLNK
        ) {
            // After chown, which clears set-id bits.
            fchmodat(to, name.as_c_str(), mode, FchmodatFlags::NoFollowSymlink).ctx(what)?;
        }
    }
    Ok(())
}
