//! The one reader of `/proc/self/mountinfo` (proc(5)), for the cgroup
//! layout and the rootfs. Paths in it are escaped by the kernel (`\040`
//! for a space, `\011` tab, `\012` newline, `\134` backslash) and are
//! unescaped here, byte for byte, so a mount point with a space in its
//! name compares equal to the path it was mounted on.

use crate::error::{Result, SysContext};
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::PathBuf;

/// One line of mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The mount's id, and the id of the mount it is mounted on (its own
    /// for the root of the namespace).
    pub id: u64,
    pub parent: u64,
    /// The part of the mounted filesystem that is the mount's root.
    pub root: PathBuf,
    /// Where it is mounted, in this process's mount namespace.
    pub mount_point: PathBuf,
    /// Optional fields (`shared:N`, `master:N`, ...).
    pub optional: Vec<String>,
    pub fstype: String,
    pub source: String,
    /// Per-superblock options (for cgroup v1: the controllers).
    pub super_options: String,
}

impl MountInfo {
    /// Whether the mount is in a shared peer group.
    pub fn is_shared(&self) -> bool {
        self.optional.iter().any(|f| f.starts_with("shared:"))
    }

    /// Whether this mount can be reached through its mount point, or
    /// another mount of `all` covers it: a tmpfs mounted over a host's
    /// /sys/fs/cgroup hides the cgroup mounts beneath, which mountinfo
    /// still lists. Judged by the mount tree, not by the order of the
    /// lines: a mount on this one's mount point covers it, and so does a
    /// mount on the same parent as this one (or as one of its ancestors)
    /// at or above that one's mount point (it was mounted later: a mount
    /// made after it would have been made on top of it).
    pub fn is_visible(&self, all: &[MountInfo]) -> bool {
        // `from`: the mount of the chain on `m`, which covers it rightly.
        let covered = |m: &MountInfo, from: Option<u64>| {
            all.iter().any(|n| {
                n.id != m.id
                    && Some(n.id) != from
                    && ((n.parent == m.id && n.mount_point == m.mount_point)
                        || (n.parent == m.parent && m.mount_point.starts_with(&n.mount_point)))
            })
        };
        let mut seen: Vec<u64> = Vec::new();
        let mut cur = self;
        loop {
            if covered(cur, seen.last().copied()) {
                return false;
            }
            seen.push(cur.id);
            match all.iter().find(|p| p.id == cur.parent) {
                // A loop would be a malformed table.
                Some(p) if !seen.contains(&p.id) => cur = p,
                _ => return true,
            }
        }
    }
}

/// This process's mounts.
pub fn read_self() -> Result<Vec<MountInfo>> {
    let text = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "read /proc/self/mountinfo".into())?;
    Ok(parse(&text))
}

/// Parses mountinfo text; lines that are not well formed are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    // id parent major:minor root mount-point options [optional...] - fstype source super-options
    let (pre, post) = line.split_once(" - ")?;
    let mut pre = pre.split(' ');
    let id = pre.next()?.parse().ok()?;
    let parent = pre.next()?.parse().ok()?;
    let _dev = pre.next()?;
    let root = unescape(pre.next()?);
    let mount_point = unescape(pre.next()?);
    let _options = pre.next()?;
    let optional = pre.map(str::to_string).collect();
    let mut post = post.split(' ');
    Some(MountInfo {
        id,
        parent,
        root,
        mount_point,
        optional,
        fstype: post.next()?.to_string(),
        source: post.next()?.to_string(),
        super_options: post.next()?.to_string(),
    })
}

/// Undoes the kernel's `\ooo` escapes (fs/proc_namespace.c, mangle()).
fn unescape(s: &str) -> PathBuf {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            if let Some(v) = b
                .get(i + 1..i + 4)
                .filter(|o| o.iter().all(|c| (b'0'..=b'7').contains(c)))
                .and_then(|o| u8::from_str_radix(std::str::from_utf8(o).ok()?, 8).ok())
            {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    PathBuf::from(OsString::from_vec(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:26 / /sys/fs/cgroup/memory rw,nosuid shared:9 - cgroup cgroup rw,memory
31 22 0:27 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate
40 22 0:50 /sub\\040dir /mnt/with\\040space\\011tab rw master:3 - tmpfs none rw
41 22 0:51 / /mnt/back\\134slash rw - tmpfs none rw
garbage line
";

    #[test]
    fn fields_and_optional_tags() {
        let m = parse(SAMPLE);
        assert_eq!(m.len(), 5);
        assert_eq!(m[0].mount_point, PathBuf::from("/"));
        assert!(m[0].is_shared());
        assert_eq!(m[1].fstype, "cgroup");
        assert_eq!(m[1].super_options, "rw,memory");
        assert_eq!(m[2].fstype, "cgroup2");
        assert_eq!(m[3].optional, vec!["master:3".to_string()]);
        assert!(!m[3].is_shared());
        assert!(m[4].optional.is_empty());
    }

    #[test]
    fn mounts_hidden_by_later_mounts_are_not_visible() {
        // 31: the host's tmpfs at /sys/fs/cgroup with cgroup mounts on it;
        // 50 stacked on 31 at the same point, with memory bound back (51);
        // 60 on /mnt hides 61 (at /mnt/a/b on the root mount, made
        // before); 62 on 60 is inside it; 70, 71 stacked: 70 is covered.
        let m = parse(
            "\
22 1 8:1 / / rw - ext4 /dev/sda1 rw
25 22 0:5 / /sys rw - sysfs sysfs rw
31 25 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw
32 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw
61 22 0:61 / /mnt/a/b rw - tmpfs t rw
50 31 0:40 / /sys/fs/cgroup rw - tmpfs tmpfs rw
51 50 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory
60 22 0:60 / /mnt rw - tmpfs t rw
62 60 0:62 / /mnt/a/b rw - tmpfs t rw
70 22 0:70 / /srv rw - tmpfs t rw
71 70 0:71 / /srv rw - tmpfs t rw
",
        );
        let visible: Vec<u64> = m
            .iter()
            .filter(|x| x.is_visible(&m))
            .map(|x| x.id)
            .collect();
        assert_eq!(visible, [22, 25, 50, 51, 60, 62, 71]);
    }

    #[test]
    fn octal_escapes_are_undone() {
        let m = parse(SAMPLE);
        assert_eq!(m[3].root, PathBuf::from("/sub dir"));
        assert_eq!(m[3].mount_point, PathBuf::from("/mnt/with space\ttab"));
        assert_eq!(m[4].mount_point, PathBuf::from("/mnt/back\\slash"));
        // Not an escape: kept as it is.
        assert_eq!(unescape("/a\\9zz\\"), PathBuf::from("/a\\9zz\\"));
        // Bytes that are not UTF-8 survive.
        assert_eq!(
            unescape("/x\\377"),
            PathBuf::from(OsString::from_vec(b"/x\xff".to_vec()))
        );
    }
}
