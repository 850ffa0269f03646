//! The few messages of CRIU's RPC (`images/rpc.proto` in CRIU's source)
//! that keel sends and reads, in protobuf's wire format. Written by hand
//! rather than generated: keel needs one request with a dozen options and
//! three fields of the response, and a protobuf runtime would add more to
//! the binary than all of checkpoint/restore together.

/// `criu_req_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReqType {
    Dump = 1,
    Restore = 2,
    PreDump = 4,
    Notify = 6,
    FeatureCheck = 9,
    Version = 10,
}

impl ReqType {
    fn from_wire(v: u64) -> Option<ReqType> {
        Some(match v {
            1 => ReqType::Dump,
            2 => ReqType::Restore,
            4 => ReqType::PreDump,
            6 => ReqType::Notify,
            9 => ReqType::FeatureCheck,
            10 => ReqType::Version,
            _ => return None,
        })
    }
}

impl std::fmt::Display for ReqType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The enum's names in rpc.proto, as runc's errors print them.
        f.write_str(match self {
            ReqType::Dump => "DUMP",
            ReqType::Restore => "RESTORE",
            ReqType::PreDump => "PRE_DUMP",
            ReqType::Notify => "NOTIFY",
            ReqType::FeatureCheck => "FEATURE_CHECK",
            ReqType::Version => "VERSION",
        })
    }
}

/// `criu_cg_mode`: what CRIU does with the cgroups (`--manage-cgroups-mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CgroupMode {
    /// Leave the cgroups alone (keel's `ignore`).
    Ignore = 0,
    /// Restore the cgroups' properties where they are not set yet.
    Soft = 3,
    /// Restore every cgroup property.
    Full = 4,
    /// Restore every property and require the cgroups not to exist.
    Strict = 5,
    /// CRIU's own default (soft).
    Default = 6,
}

impl std::str::FromStr for CgroupMode {
    type Err = ();
    /// runc's spellings of `--manage-cgroups-mode`.
    fn from_str(s: &str) -> Result<CgroupMode, ()> {
        Ok(match s {
            "" => CgroupMode::Default,
            "soft" => CgroupMode::Soft,
            "full" => CgroupMode::Full,
            "strict" => CgroupMode::Strict,
            "ignore" => CgroupMode::Ignore,
            _ => return Err(()),
        })
    }
}

/// `criu_opts`: the options keel sets (the field numbers are rpc.proto's).
#[derive(Debug, Default, Clone)]
pub struct Opts {
    pub images_dir_fd: i32,
    pub pid: Option<i32>,
    pub leave_running: bool,
    pub ext_unix_sk: bool,
    pub tcp_established: bool,
    pub evasive_devices: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub log_level: i32,
    pub log_file: String,
    /// `ps`: the page server to send the pages to (address, port).
    pub page_server: Option<(String, i32)>,
    pub notify_scripts: bool,
    pub root: Option<String>,
    /// `parent_img`: the parent images, relative to the image directory.
    pub parent_img: Option<String>,
    pub track_mem: bool,
    pub auto_dedup: bool,
    pub work_dir_fd: Option<i32>,
    /// `ext_mnt`: (key, val) pairs.
    pub ext_mnt: Vec<(String, String)>,
    pub manage_cgroups: bool,
    /// `cg_root`: (controllers or None for all, path).
    pub cg_root: Vec<(Option<String>, String)>,
    pub rst_sibling: bool,
    /// `inherit_fd`: (key, fd in CRIU's process).
    pub inherit_fd: Vec<(String, i32)>,
    pub manage_cgroups_mode: Option<CgroupMode>,
    pub external: Vec<String>,
    pub empty_ns: u32,
    /// `join_ns`: (namespace type, file).
    pub join_ns: Vec<(String, String)>,
    pub freeze_cgroup: Option<String>,
    pub orphan_pts_master: bool,
    pub config_file: Option<String>,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
    /// Lazy migration: at dump, serve the pages from memory to a
    /// `criu lazy-pages` daemon; at restore, have that daemon fill them in
    /// through userfaultfd as the tasks touch them.
    pub lazy_pages: bool,
}

/// `criu_features`: what a FEATURE_CHECK asks about and CRIU answers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Features {
    /// Memory changes tracking (soft-dirty bits): what a pre-dump and a
    /// dump onto a parent need.
    pub mem_track: bool,
    /// Lazy migration (userfaultfd): what `--lazy-pages` needs.
    pub lazy_pages: bool,
}

/// `criu_req`.
#[derive(Debug, Clone)]
pub struct Request {
    pub typ: ReqType,
    pub opts: Option<Opts>,
    pub notify_success: bool,
    /// The features a FEATURE_CHECK asks about.
    pub features: Option<Features>,
}

/// What keel reads of `criu_resp`.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Response {
    pub typ: Option<ReqType>,
    pub success: bool,
    /// `restore.pid`: the restored init.
    pub restore_pid: Option<i32>,
    /// `notify.script` and `notify.pid`.
    pub notify: Option<(String, i32)>,
    pub cr_errno: Option<i32>,
    pub cr_errmsg: Option<String>,
    /// `version`: (major, minor, sublevel).
    pub version: Option<(i32, i32, i32)>,
    /// `features`: the answer to a FEATURE_CHECK.
    pub features: Option<Features>,
}

/// A protobuf message being written.
#[derive(Default)]
struct Writer(Vec<u8>);

impl Writer {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    /// int32/uint32/enum/bool: negative int32s are ten bytes, as protobuf
    /// sign-extends them.
    fn int(&mut self, field: u32, v: i64) {
        self.key(field, 0);
        self.varint(v as u64);
    }

    fn flag(&mut self, field: u32, v: bool) {
        if v {
            self.int(field, 1);
        }
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    fn message(&mut self, field: u32, m: Writer) {
        self.bytes(field, &m.0);
    }

    fn pair(&mut self, field: u32, k: Option<&str>, v: &str) {
        let mut m = Writer::default();
        if let Some(k) = k {
            m.bytes(1, k.as_bytes());
        }
        m.bytes(2, v.as_bytes());
        self.message(field, m);
    }
}

impl Opts {
    fn encode(&self) -> Writer {
        let mut w = Writer::default();
        w.int(1, self.images_dir_fd.into());
        if let Some(pid) = self.pid {
            w.int(2, pid.into());
        }
        w.flag(3, self.leave_running);
        w.flag(4, self.ext_unix_sk);
        w.flag(5, self.tcp_established);
        w.flag(6, self.evasive_devices);
        w.flag(7, self.shell_job);
        w.flag(8, self.file_locks);
        w.int(9, self.log_level.into());
        w.bytes(10, self.log_file.as_bytes());
        if let Some((address, port)) = &self.page_server {
            let mut m = Writer::default();
            m.bytes(1, address.as_bytes());
            m.int(2, (*port).into());
            w.message(11, m);
        }
        w.flag(12, self.notify_scripts);
        if let Some(root) = &self.root {
            w.bytes(13, root.as_bytes());
        }
        if let Some(parent) = &self.parent_img {
            w.bytes(14, parent.as_bytes());
        }
        w.flag(15, self.track_mem);
        w.flag(16, self.auto_dedup);
        if let Some(fd) = self.work_dir_fd {
            w.int(17, fd.into());
        }
        for (k, v) in &self.ext_mnt {
            w.pair(23, Some(k), v);
        }
        w.flag(24, self.manage_cgroups);
        for (ctrl, path) in &self.cg_root {
            w.pair(25, ctrl.as_deref(), path);
        }
        w.flag(26, self.rst_sibling);
        for (key, fd) in &self.inherit_fd {
            let mut m = Writer::default();
            m.bytes(1, key.as_bytes());
            m.int(2, (*fd).into());
            w.message(27, m);
        }
        if let Some(mode) = self.manage_cgroups_mode {
            w.int(34, mode as i64);
        }
        for e in &self.external {
            w.bytes(37, e.as_bytes());
        }
        if self.empty_ns != 0 {
            w.int(38, self.empty_ns.into());
        }
        for (ns, file) in &self.join_ns {
            w.pair(39, Some(ns), file);
        }
        if let Some(f) = &self.freeze_cgroup {
            w.bytes(44, f.as_bytes());
        }
        w.flag(48, self.lazy_pages);
        w.flag(50, self.orphan_pts_master);
        if let Some(c) = &self.config_file {
            w.bytes(51, c.as_bytes());
        }
        if let Some(p) = &self.lsm_profile {
            w.bytes(53, p.as_bytes());
        }
        if let Some(c) = &self.lsm_mount_context {
            w.bytes(63, c.as_bytes());
        }
        w
    }
}

impl Request {
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        w.int(1, self.typ as i64);
        if let Some(o) = &self.opts {
            w.message(2, o.encode());
        }
        w.flag(3, self.notify_success);
        if let Some(f) = self.features {
            // Only the features asked about, as runc asks.
            let mut m = Writer::default();
            m.flag(1, f.mem_track);
            m.flag(2, f.lazy_pages);
            w.message(5, m);
        }
        w.0
    }
}

/// A field of a message being read: its number and value.
enum Field<'a> {
    Int(u32, u64),
    Bytes(u32, &'a [u8]),
}

/// Walks the fields of one message; None on malformed input.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first()?;
            self.0 = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }

    fn next_field(&mut self) -> Option<Option<Field<'a>>> {
        if self.0.is_empty() {
            return Some(None);
        }
        let key = self.varint()?;
        let field = u32::try_from(key >> 3).ok()?;
        Some(Some(match key & 7 {
            0 => Field::Int(field, self.varint()?),
            1 => Field::Int(field, u64::from_le_bytes(self.take(8)?.try_into().ok()?)),
            2 => {
                let n = usize::try_from(self.varint()?).ok()?;
                Field::Bytes(field, self.take(n)?)
            }
            5 => Field::Int(
                field,
                u32::from_le_bytes(self.take(4)?.try_into().ok()?).into(),
            ),
            _ => return None,
        }))
    }

    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    /// Every field, or None if the message is malformed.
    fn fields(data: &'a [u8]) -> Option<Vec<Field<'a>>> {
        let mut r = Reader(data);
        let mut out = Vec::new();
        while let Some(f) = r.next_field()? {
            out.push(f);
        }
        Some(out)
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Response {
    /// Decodes a `criu_resp`; None when it is not one.
    pub fn decode(data: &[u8]) -> Option<Response> {
        let mut r = Response::default();
        for f in Reader::fields(data)? {
            match f {
                Field::Int(1, v) => r.typ = ReqType::from_wire(v),
                Field::Int(2, v) => r.success = v != 0,
                Field::Bytes(4, m) => {
                    for f in Reader::fields(m)? {
                        if let Field::Int(1, pid) = f {
                            r.restore_pid = Some(pid as i32);
                        }
                    }
                }
                Field::Bytes(5, m) => {
                    let (mut script, mut pid) = (String::new(), 0);
                    for f in Reader::fields(m)? {
                        match f {
                            Field::Bytes(1, s) => script = text(s),
                            Field::Int(2, p) => pid = p as i32,
                            _ => {}
                        }
                    }
                    r.notify = Some((script, pid));
                }
                Field::Int(7, v) => r.cr_errno = Some(v as i32),
                Field::Bytes(9, s) => r.cr_errmsg = Some(text(s)),
                Field::Bytes(10, m) => {
                    let mut v = (0, 0, 0);
                    for f in Reader::fields(m)? {
                        match f {
                            Field::Int(1, n) => v.0 = n as i32,
                            Field::Int(2, n) => v.1 = n as i32,
                            Field::Int(4, n) => v.2 = n as i32,
                            _ => {}
                        }
                    }
                    r.version = Some(v);
                }
                Field::Bytes(8, m) => {
                    let mut f = Features::default();
                    for field in Reader::fields(m)? {
                        match field {
                            Field::Int(1, v) => f.mem_track = v != 0,
                            Field::Int(2, v) => f.lazy_pages = v != 0,
                            _ => {}
                        }
                    }
                    r.features = Some(f);
                }
                _ => {}
            }
        }
        Some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_bytes_match_protobuf() {
        // Checked against protoc --encode=criu_req rpc.proto for
        // `type: DUMP opts { images_dir_fd: 5 log_level: 4 log_file: "d" }`.
        let req = Request {
            typ: ReqType::Dump,
            opts: Some(Opts {
                images_dir_fd: 5,
                log_level: 4,
                log_file: "d".into(),
                ..Opts::default()
            }),
            notify_success: false,
            features: None,
        };
        assert_eq!(
            req.encode(),
            [0x08, 0x01, 0x12, 0x07, 0x08, 0x05, 0x48, 0x04, 0x52, 0x01, b'd']
        );
    }

    #[test]
    fn negative_int32_is_sign_extended() {
        let mut w = Writer::default();
        w.int(1, -1);
        assert_eq!(w.0.len(), 11);
        assert_eq!(Reader(&w.0[1..]).varint(), Some(u64::MAX));
    }

    #[test]
    fn response_fields() {
        // type: NOTIFY success: true notify { script: "post-restore" pid: 42 }
        let mut notify = Writer::default();
        notify.bytes(1, b"post-restore");
        notify.int(2, 42);
        let mut w = Writer::default();
        w.int(1, 6);
        w.int(2, 1);
        w.message(5, notify);
        let r = Response::decode(&w.0).unwrap();
        assert_eq!(r.typ, Some(ReqType::Notify));
        assert!(r.success);
        assert_eq!(r.notify, Some(("post-restore".into(), 42)));

        let mut w = Writer::default();
        w.int(1, 2);
        w.int(2, 0);
        w.int(7, 2);
        w.bytes(9, b"no images");
        let r = Response::decode(&w.0).unwrap();
        assert_eq!(r.typ, Some(ReqType::Restore));
        assert!(!r.success);
        assert_eq!(r.cr_errno, Some(2));
        assert_eq!(r.cr_errmsg.as_deref(), Some("no images"));
    }

    #[test]
    fn feature_check_round_trip() {
        let req = Request {
            typ: ReqType::FeatureCheck,
            opts: None,
            notify_success: false,
            features: Some(Features {
                mem_track: true,
                ..Features::default()
            }),
        };
        // type: FEATURE_CHECK features { mem_track: true }
        assert_eq!(req.encode(), [0x08, 0x09, 0x2a, 0x02, 0x08, 0x01]);
        let mut f = Writer::default();
        f.int(1, 0);
        let mut w = Writer::default();
        w.int(1, 9);
        w.int(2, 1);
        w.message(8, f);
        let r = Response::decode(&w.0).unwrap();
        assert_eq!(r.typ, Some(ReqType::FeatureCheck));
        assert_eq!(r.features, Some(Features::default()));
        let lazy = Request {
            typ: ReqType::FeatureCheck,
            opts: None,
            notify_success: false,
            features: Some(Features {
                lazy_pages: true,
                ..Features::default()
            }),
        };
        // type: FEATURE_CHECK features { lazy_pages: true }
        assert_eq!(lazy.encode(), [0x08, 0x09, 0x2a, 0x02, 0x10, 0x01]);
        let mut f = Writer::default();
        f.int(2, 1);
        let mut w = Writer::default();
        w.int(1, 9);
        w.int(2, 1);
        w.message(8, f);
        let r = Response::decode(&w.0).unwrap();
        assert!(r.features.is_some_and(|f| f.lazy_pages && !f.mem_track));
    }

    #[test]
    fn malformed_responses_are_refused() {
        assert_eq!(Response::decode(&[0x08]), None);
        assert_eq!(Response::decode(&[0x12, 0x05, 0x01]), None);
        assert_eq!(Response::decode(&[0x0b]), None);
    }
}
