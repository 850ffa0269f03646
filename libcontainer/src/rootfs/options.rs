//! Mount options as runc understands them: flags for mount(2), propagation,
//! recursive attributes for mount_setattr(2), and the rest as data.

use nix::mount::MsFlags;

/// One mount of the config, ready to perform.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Flags set by the options.
    pub flags: MsFlags,
    /// Flags the options clear (`rw`, `dev`, `suid`, ...): a bind must
    /// drop them even when its source has them.
    pub cleared: MsFlags,
    /// Propagation changes, applied in order after the mount.
    pub propagation: Vec<MsFlags>,
    /// MOUNT_ATTR_* to set recursively (`rro`, `rnosuid`, …).
    pub rec_set: u64,
    /// MOUNT_ATTR_* to clear recursively (`rrw`, `rsuid`, …).
    pub rec_clr: u64,
    /// Filesystem-specific options, comma-joined for the data argument.
    pub data: String,
    /// `tmpcopyup`: copy what the image has at the destination into the tmpfs.
    pub copy_up: bool,
    /// `idmap` / `ridmap` were asked for.
    pub idmap: bool,
    /// `ridmap`: idmap every mount of the tree.
    pub idmap_recursive: bool,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const MOUNT_ATTR_RELATIME: u64 = 0x0;
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR__ATIME: u64 = 0x70;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// Parses a mount's options list.
///
/// ```
/// use libkeel::rootfs::options::parse;
/// let o = parse(&["ro".into(), "nosuid".into(), "rslave".into(), "size=64k".into()]);
/// assert!(o.flags.contains(nix::mount::MsFlags::MS_RDONLY | nix::mount::MsFlags::MS_NOSUID));
/// assert_eq!(o.data, "size=64k");
/// ```
pub fn parse(options: &[String]) -> MountOptions {
    let mut o = MountOptions {
        flags: MsFlags::empty(),
        cleared: MsFlags::empty(),
        propagation: Vec::new(),
        rec_set: 0,
        rec_clr: 0,
        data: String::new(),
        copy_up: false,
        idmap: false,
        idmap_recursive: false,
    };
    for opt in options {
        let (set, clear) = match opt.as_str() {
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            "async" => (MsFlags::empty(), MsFlags::MS_SYNCHRONOUS),
            "atime" => (MsFlags::empty(), MsFlags::MS_NOATIME),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "diratime" => (MsFlags::empty(), MsFlags::MS_NODIRATIME),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "mand" => (MsFlags::MS_MANDLOCK, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "nomand" => (MsFlags::empty(), MsFlags::MS_MANDLOCK),
            "norelatime" => (MsFlags::empty(), MsFlags::MS_RELATIME),
            "nostrictatime" => (MsFlags::empty(), MsFlags::MS_STRICTATIME),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "nosymfollow" => (
                MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
                MsFlags::empty(),
            ),
            "symfollow" => (
                MsFlags::empty(),
                MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW),
            ),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "remount" => (MsFlags::MS_REMOUNT, MsFlags::empty()),
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable"
            | "runbindable" => {
                let mut p = match opt.trim_start_matches('r') {
                    "private" => MsFlags::MS_PRIVATE,
                    "shared" => MsFlags::MS_SHARED,
                    "slave" => MsFlags::MS_SLAVE,
                    _ => MsFlags::MS_UNBINDABLE,
                };
                if opt.starts_with('r') {
                    p |= MsFlags::MS_REC;
                }
                o.propagation.push(p);
                continue;
            }
            "tmpcopyup" => {
                o.copy_up = true;
                continue;
            }
            "idmap" | "ridmap" => {
                o.idmap = true;
                o.idmap_recursive = opt == "ridmap";
                continue;
            }
            other => {
                if let Some((set, clr)) = recursive_attr(other) {
                    o.rec_set = (o.rec_set & !clr) | set;
                    o.rec_clr = (o.rec_clr & !set) | clr;
                    // Atime modes are one field: clearing selects the mode.
                    if set & MOUNT_ATTR__ATIME != 0 || clr == MOUNT_ATTR__ATIME {
                        o.rec_clr |= MOUNT_ATTR__ATIME;
                    }
                    continue;
                }
                if !o.data.is_empty() {
                    o.data.push(',');
                }
                o.data.push_str(other);
                continue;
            }
        };
        o.flags = (o.flags & !clear) | set;
        o.cleared = (o.cleared & !set) | clear;
    }
    o
}

/// `r`-prefixed options: (attributes to set, attributes to clear).
fn recursive_attr(opt: &str) -> Option<(u64, u64)> {
    Some(match opt {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rrelatime" => (MOUNT_ATTR_RELATIME, MOUNT_ATTR__ATIME),
        "rnorelatime" => (0, MOUNT_ATTR__ATIME),
        "rnoatime" => (MOUNT_ATTR_NOATIME, 0),
        "ratime" => (0, MOUNT_ATTR__ATIME),
        "rstrictatime" => (MOUNT_ATTR_STRICTATIME, 0),
        "rnostrictatime" => (0, MOUNT_ATTR__ATIME),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(opts: &[&str]) -> MountOptions {
        parse(&opts.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn flags_and_data() {
        let o = p(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
    }

    #[test]
    fn later_option_wins() {
        assert_eq!(p(&["ro", "rw"]).flags, MsFlags::empty());
        assert_eq!(p(&["rw", "ro"]).flags, MsFlags::MS_RDONLY);
    }

    #[test]
    fn cleared_flags_are_kept_apart() {
        let o = p(&["bind", "dev", "suid", "rw", "exec", "symfollow"]);
        assert_eq!(o.flags, MsFlags::MS_BIND);
        assert_eq!(
            o.cleared,
            MsFlags::MS_NODEV
                | MsFlags::MS_NOSUID
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOEXEC
                | MsFlags::from_bits_retain(libc::MS_NOSYMFOLLOW)
        );
        // The later option wins, as for the flags set.
        let o = p(&["rw", "ro", "nodev", "dev"]);
        assert_eq!(o.flags, MsFlags::MS_RDONLY);
        assert_eq!(o.cleared, MsFlags::MS_NODEV);
    }

    #[test]
    fn rbind_and_propagation() {
        let o = p(&["rbind", "rslave", "private"]);
        assert_eq!(o.flags, MsFlags::MS_BIND | MsFlags::MS_REC);
        assert_eq!(
            o.propagation,
            vec![MsFlags::MS_SLAVE | MsFlags::MS_REC, MsFlags::MS_PRIVATE]
        );
    }

    #[test]
    fn recursive_attributes() {
        let o = p(&["rbind", "rro", "rnosuid"]);
        assert_eq!(o.rec_set, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID);
        assert_eq!(o.rec_clr, 0);
        let o = p(&["rro", "rrw"]);
        assert_eq!(o.rec_set, 0);
        assert_eq!(o.rec_clr, MOUNT_ATTR_RDONLY);
        let o = p(&["rnoatime"]);
        assert_eq!(o.rec_set, MOUNT_ATTR_NOATIME);
        assert_eq!(o.rec_clr, MOUNT_ATTR__ATIME);
    }
}
