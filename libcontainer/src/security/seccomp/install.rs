//! Loading a program into the kernel, and asking it which flags it knows.

use crate::error::{Error, Result};
use nix::errno::Errno;
use std::os::fd::{FromRawFd, OwnedFd};

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog); with no flags and no
/// seccomp(2) (kernels before 3.17), prctl(PR_SET_SECCOMP) does the same.
/// The `optional` flags are dropped where the kernel does not know them.
pub fn install(
    program: &[libc::sock_filter],
    flags: libc::c_ulong,
    optional: libc::c_ulong,
) -> Result<Option<OwnedFd>> {
    let len = u16::try_from(program.len())
        .map_err(|_| Error::invalid("linux.seccomp", "filter too long"))?;
    let prog = libc::sock_fprog {
        len,
        // The kernel only reads through this pointer.
        filter: program.as_ptr().cast_mut(),
    };
    let load = |flags: libc::c_ulong| {
        // SAFETY: prog points to `len` valid instructions that outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flags,
                &prog as *const libc::sock_fprog,
            )
        };
        Errno::result(r)
    };
    let mut result = load(flags);
    if matches!(result, Err(Errno::EINVAL)) && flags & optional != 0 {
        result = load(flags & !optional);
    }
    match result {
        Ok(fd) if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER != 0 => {
            let fd = i32::try_from(fd).map_err(|_| {
                Error::sys("linux.seccomp: seccomp(2) returned a bad fd", Errno::EBADF)
            })?;
            // SAFETY: the kernel just gave us this fd; nobody else owns it.
            Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
        }
        Ok(_) => Ok(None),
        Err(Errno::ENOSYS) if flags & !optional == 0 => {
            // SAFETY: as above.
            let r = unsafe {
                libc::prctl(
                    libc::PR_SET_SECCOMP,
                    libc::SECCOMP_MODE_FILTER,
                    &prog as *const libc::sock_fprog,
                )
            };
            Errno::result(r)
                .map(|_| None)
                .map_err(|e| Error::sys("linux.seccomp: prctl(PR_SET_SECCOMP)", e))
        }
        Err(e) => Err(Error::sys(
            format!("linux.seccomp: seccomp(SECCOMP_SET_MODE_FILTER, {flags:#x})"),
            e,
        )),
    }
}

/// The flags of [`super::KNOWN_FLAGS`] this kernel accepts, probed as runc
/// does: with a NULL program, a known flag fails with EFAULT, an unknown
/// one with EINVAL. Nothing gets installed.
pub fn supported_flags() -> Vec<&'static str> {
    let probe = |flag: libc::c_ulong| {
        // SAFETY: a NULL program is never dereferenced; the kernel fails
        // with EFAULT when it tries to copy it.
        let r = unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                flag,
                std::ptr::null::<libc::sock_fprog>(),
            )
        };
        Errno::result(r) == Err(Errno::EFAULT)
    };
    [
        ("SECCOMP_FILTER_FLAG_TSYNC", libc::SECCOMP_FILTER_FLAG_TSYNC),
        ("SECCOMP_FILTER_FLAG_LOG", libc::SECCOMP_FILTER_FLAG_LOG),
        (
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
            libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
        ),
        (
            "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV",
            // Only valid together with a listener.
            libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV | libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
        ),
    ]
    .into_iter()
    .filter(|&(_, f)| probe(f))
    .map(|(n, _)| n)
    .collect()
}
