//! The unprivileged user of the rootless tests, made on first use.
//!
//! `useradd` also gives it subordinate id ranges (/etc/subuid, /etc/subgid);
//! it is kept for later runs.

use std::process::Command;

pub const USER: &str = "keel-rootless";

pub struct User {
    pub uid: u32,
    pub gid: u32,
    /// First subordinate uid and gid.
    pub sub: (u32, u32),
}

/// The test user, made on first use; None (with the reason printed) where
/// it cannot be.
pub fn user() -> Option<User> {
    let id = |flag: &str| -> Option<u32> {
        let o = Command::new("id").args([flag, USER]).output().ok()?;
        String::from_utf8_lossy(&o.stdout).trim().parse().ok()
    };
    if id("-u").is_none() {
        let made = Command::new("useradd")
            .args(["--create-home", "--shell", "/bin/sh", USER])
            .status();
        // Another test binary may be making it at the same moment.
        if !matches!(made, Ok(s) if s.success()) && id("-u").is_none() {
            eprintln!("SKIPPED rootless: useradd {USER} failed: {made:?}");
            return None;
        }
    }
    let sub = |file: &str| -> Option<u32> {
        let text = std::fs::read_to_string(file).ok()?;
        text.lines().find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() == 3 && f[0] == USER)
                .then(|| f[1].parse().ok())
                .flatten()
        })
    };
    match (id("-u"), id("-g"), sub("/etc/subuid"), sub("/etc/subgid")) {
        (Some(uid), Some(gid), Some(su), Some(sg)) => Some(User {
            // A home left by an earlier user of that name must be this one's.
            uid: own_home(uid, gid),
            gid,
            sub: (su, sg),
        }),
        other => {
            eprintln!("SKIPPED rootless: {USER} has no ids or subordinate ranges: {other:?}");
            None
        }
    }
}

/// Makes /home/USER exist and belong to `uid`:`gid`; returns `uid`.
fn own_home(uid: u32, gid: u32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    let home = std::path::PathBuf::from(format!("/home/{USER}"));
    let _ = std::fs::create_dir_all(&home);
    if std::fs::metadata(&home).is_ok_and(|m| m.uid() != uid) {
        let _ = Command::new("chown")
            .arg("-R")
            .arg(format!("{uid}:{gid}"))
            .arg(&home)
            .status();
    }
    uid
}
