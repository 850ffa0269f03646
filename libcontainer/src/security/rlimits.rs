//! `process.rlimits`, converted in the parent and set in the init before it
//! drops privileges (raising a hard limit needs CAP_SYS_RESOURCE).

use crate::error::{Error, Result};
use oci_spec::runtime::PosixRlimit;

/// One limit: resource number, soft, hard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub resource: libc::c_int,
    pub soft: u64,
    pub hard: u64,
}

fn resource(name: &str) -> Option<libc::c_int> {
    Some(match name {
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_LOCKS" => libc::RLIMIT_LOCKS,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_RSS" => libc::RLIMIT_RSS,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        "RLIMIT_RTTIME" => libc::RLIMIT_RTTIME,
        "RLIMIT_SIGPENDING" => libc::RLIMIT_SIGPENDING,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        _ => return None,
    } as libc::c_int)
}

pub fn from_spec(limits: &[PosixRlimit]) -> Result<Vec<Rlimit>> {
    limits
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let name = serde_json::to_value(l.typ())
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            let resource = resource(&name).ok_or_else(|| {
                Error::invalid(
                    format!("process.rlimits[{i}].type"),
                    format!("unknown rlimit {name}"),
                )
            })?;
            if l.soft() > l.hard() {
                return Err(Error::invalid(
                    format!("process.rlimits[{i}]"),
                    format!(
                        "{name}: soft limit {} above hard limit {}",
                        l.soft(),
                        l.hard()
                    ),
                ));
            }
            Ok(Rlimit {
                resource,
                soft: l.soft(),
                hard: l.hard(),
            })
        })
        .collect()
}

pub fn apply(limits: &[Rlimit]) -> Result<()> {
    for l in limits {
        let r = libc::rlimit {
            rlim_cur: l.soft,
            rlim_max: l.hard,
        };
        // SAFETY: setrlimit with a valid struct.
        let ret = unsafe { libc::setrlimit(l.resource as _, &r) };
        nix::errno::Errno::result(ret).map_err(|e| {
            Error::sys(
                format!(
                    "process.rlimits: setrlimit {} to {}/{}",
                    l.resource, l.soft, l.hard
                ),
                e,
            )
        })?;
    }
    Ok(())
}
