//! The v1 devices controller's semantics, emulated: device rules applied
//! in order give a default (allow or deny) and exceptions, as the kernel
//! keeps them (runc's devicesemulator). The v2 eBPF program is built from
//! the result (`devicefilter`), and on v1 only the transition from what the
//! cgroup holds now to the result is written ([`Emulator::transition`]).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

const FIELD: &str = "linux.resources.devices";

const ACC_MKNOD: u8 = 1;
const ACC_READ: u8 = 2;
const ACC_WRITE: u8 = 4;
pub(crate) const ACC_ALL: u8 = ACC_MKNOD | ACC_READ | ACC_WRITE;
/// One device cgroup rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRule {
    pub allow: bool,
    /// 'a', 'c' or 'b'.
    pub typ: char,
    pub major: Option<i64>,
    pub minor: Option<i64>,
    pub access: String,
}

impl std::fmt::Display for DeviceRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let num = |n: Option<i64>| n.map_or("*".to_string(), |n| n.to_string());
        write!(
            f,
            "{} {}:{} {}",
            self.typ,
            num(self.major),
            num(self.minor),
            self.access
        )
    }
}

impl DeviceRule {
    pub(crate) fn allow(
        typ: char,
        major: Option<i64>,
        minor: Option<i64>,
        access: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow: true,
            typ,
            major,
            minor,
            access: access.into(),
        }
    }

    /// The rule for exception `meta` with `perms`.
    fn of(allow: bool, meta: Meta, perms: u8) -> DeviceRule {
        DeviceRule {
            allow,
            typ: meta.0,
            major: meta.1,
            minor: meta.2,
            access: access_string(perms),
        }
    }
}

/// (type, major, minor); None is a wildcard.
pub(crate) type Meta = (char, Option<i64>, Option<i64>);

/// The devices controller's state after a list of rules, as v1 keeps it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Emulator {
    pub(crate) default_allow: bool,
    /// Exceptions to the default, with their access bits.
    pub(crate) exceptions: BTreeMap<Meta, u8>,
}

fn access_bits(access: &str) -> Result<u8> {
    access.chars().try_fold(0, |acc, c| match c {
        'r' => Ok(acc | ACC_READ),
        'w' => Ok(acc | ACC_WRITE),
        'm' => Ok(acc | ACC_MKNOD),
        _ => Err(Error::invalid(
            FIELD,
            format!("unknown device access {c:?} in {access:?}"),
        )),
    })
}

impl Emulator {
    /// Applies the rules in order.
    pub(crate) fn new(rules: &[DeviceRule]) -> Result<Emulator> {
        let mut e = Emulator::default();
        for r in rules {
            e.apply(r)?;
        }
        Ok(e)
    }

    fn apply(&mut self, r: &DeviceRule) -> Result<()> {
        let perms = access_bits(&r.access)?;
        if r.typ == 'a' {
            // v1 reads any `a` rule as `a *:* rwm`: a new default.
            *self = Emulator {
                default_allow: r.allow,
                exceptions: BTreeMap::new(),
            };
            return Ok(());
        }
        // A negative number is a wildcard too (runc's -1).
        let meta = (
            r.typ,
            r.major.filter(|&m| m >= 0),
            r.minor.filter(|&m| m >= 0),
        );
        if r.allow == self.default_allow {
            self.remove(meta, perms, r)
        } else {
            *self.exceptions.entry(meta).or_default() |= perms;
            Ok(())
        }
    }

    /// Takes `perms` away from the exception `meta`. v1 silently ignores
    /// removing part of a wildcard exception; refuse it, as runc does,
    /// rather than let the config look safer than it is.
    fn remove(&mut self, meta: Meta, perms: u8, r: &DeviceRule) -> Result<()> {
        for wild in [
            (meta.0, None, meta.2),
            (meta.0, meta.1, None),
            (meta.0, None, None),
        ] {
            if wild == meta {
                continue;
            }
            if self.exceptions.get(&wild).is_some_and(|p| p & perms != 0) {
                return Err(Error::invalid(
                    FIELD,
                    format!(
                        "rule {r} cannot punch a hole in the wildcard rule {}",
                        DeviceRule {
                            allow: !self.default_allow,
                            typ: wild.0,
                            major: wild.1,
                            minor: wild.2,
                            access: access_string(self.exceptions[&wild]),
                        }
                    ),
                ));
            }
        }
        if let Some(p) = self.exceptions.get_mut(&meta) {
            *p &= !perms;
            if *p == 0 {
                self.exceptions.remove(&meta);
            }
        }
        Ok(())
    }

    /// What a v1 devices cgroup holds, from its `devices.list`: `a *:* rwm`
    /// for allow-all (the kernel lists nothing else then), else the
    /// allowed exceptions to deny-all.
    pub(crate) fn from_list(list: &str) -> Result<Emulator> {
        let mut e = Emulator::default();
        for line in list.lines().filter(|l| !l.trim().is_empty()) {
            let bad = || Error::invalid(FIELD, format!("unexpected devices.list line {line:?}"));
            let mut f = line.split_whitespace();
            let (Some(typ), Some(nums), Some(access)) = (f.next(), f.next(), f.next()) else {
                return Err(bad());
            };
            let typ = typ.chars().next().ok_or_else(bad)?;
            if typ == 'a' {
                return Ok(Emulator {
                    default_allow: true,
                    exceptions: BTreeMap::new(),
                });
            }
            let (major, minor) = nums.split_once(':').ok_or_else(bad)?;
            let num = |n: &str| match n {
                "*" => Ok(None),
                n => n.parse().map(Some).map_err(|_| bad()),
            };
            *e.exceptions
                .entry((typ, num(major)?, num(minor)?))
                .or_default() |= access_bits(access)?;
        }
        Ok(e)
    }

    /// The fewest v1 rules that turn a cgroup holding `self` into one
    /// holding `target`, as runc's Transition computes them: a rule that
    /// would change nothing is not written (an `a` rule on a cgroup with
    /// sub-cgroups fails with EINVAL). From allow-all, whose deny
    /// exceptions devices.list does not show, the default is always reset.
    pub(crate) fn transition(&self, target: &Emulator) -> Vec<DeviceRule> {
        let mut out = Vec::new();
        let empty = BTreeMap::new();
        let old = if self.default_allow || self.default_allow != target.default_allow {
            out.push(DeviceRule {
                allow: target.default_allow,
                typ: 'a',
                major: None,
                minor: None,
                access: "rwm".into(),
            });
            &empty
        } else {
            &self.exceptions
        };
        for (&meta, &perms) in old {
            let dropped = perms & !target.exceptions.get(&meta).copied().unwrap_or(0);
            if dropped != 0 {
                out.push(DeviceRule::of(target.default_allow, meta, dropped));
            }
        }
        for (&meta, &perms) in &target.exceptions {
            let gained = perms & !old.get(&meta).copied().unwrap_or(0);
            if gained != 0 {
                out.push(DeviceRule::of(!target.default_allow, meta, gained));
            }
        }
        out
    }

    /// Whether access `acc` to the device is allowed (the program's
    /// meaning, for tests).
    #[cfg(test)]
    fn allows(&self, typ: char, major: i64, minor: i64, acc: u8) -> bool {
        let hit = self.exceptions.iter().any(|(&(t, ma, mi), &p)| {
            t == typ
                && ma.is_none_or(|m| m == major)
                && mi.is_none_or(|m| m == minor)
                && acc & p == acc
        });
        hit != self.default_allow
    }
}

pub(crate) fn access_string(bits: u8) -> String {
    [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')]
        .iter()
        .filter(|(b, _)| bits & b != 0)
        .map(|(_, c)| c)
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A rule in one line (the eBPF program's tests use it too).
    pub(crate) fn rule(
        allow: bool,
        typ: char,
        major: Option<i64>,
        minor: Option<i64>,
        a: &str,
    ) -> DeviceRule {
        DeviceRule {
            allow,
            typ,
            major,
            minor,
            access: a.into(),
        }
    }

    #[test]
    fn last_matching_rule_wins() {
        let e = Emulator::new(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'c', Some(1), Some(5), "r"),
            rule(false, 'c', Some(1), Some(3), "w"),
        ])
        .unwrap();
        assert!(e.allows('c', 1, 3, ACC_READ));
        assert!(!e.allows('c', 1, 3, ACC_WRITE));
        assert!(e.allows('c', 1, 5, ACC_READ));
        assert!(!e.allows('c', 1, 5, ACC_READ | ACC_WRITE));
        assert!(!e.allows('b', 1, 3, ACC_READ));
        // An `a` rule starts over.
        let e = Emulator::new(&[
            rule(true, 'c', Some(1), Some(3), "rwm"),
            rule(true, 'a', None, None, "rwm"),
            rule(false, 'c', Some(10), None, "rwm"),
        ])
        .unwrap();
        assert!(e.allows('b', 8, 0, ACC_ALL));
        assert!(!e.allows('c', 10, 200, ACC_READ));
        assert!(e.allows('c', 1, 3, ACC_ALL));
    }

    #[test]
    fn holes_in_wildcards_are_refused() {
        let err = Emulator::new(&[
            rule(false, 'a', None, None, "rwm"),
            rule(true, 'c', Some(136), None, "rwm"),
            rule(false, 'c', Some(136), Some(2), "rw"),
        ])
        .unwrap_err()
        .to_string();
        assert!(err.contains("cannot punch a hole"), "{err}");
    }

    #[test]
    fn devices_list_is_read_back() {
        let e = Emulator::from_list("c 1:3 rwm\nb 8:* r\nc *:* m\n").unwrap();
        assert!(!e.default_allow);
        assert_eq!(e.exceptions.len(), 3);
        assert_eq!(e.exceptions[&('b', Some(8), None)], ACC_READ);
        assert_eq!(e.exceptions[&('c', None, None)], ACC_MKNOD);
        assert!(Emulator::from_list("a *:* rwm\n").unwrap().default_allow);
        assert!(Emulator::from_list("x").is_err());
    }

    #[test]
    fn transition_writes_only_what_changes() {
        let deny_all = rule(false, 'a', None, None, "rwm");
        let null = rule(true, 'c', Some(1), Some(3), "rwm");
        let target = Emulator::new(&[deny_all.clone(), null.clone()]).unwrap();
        // Already there: nothing to write (no `a` rule, so no EINVAL on a
        // cgroup with sub-cgroups).
        let current = Emulator::from_list("c 1:3 rwm\n").unwrap();
        assert!(current.transition(&target).is_empty());
        // From allow-all: reset to deny-all, then the exceptions.
        let text = |rules: Vec<DeviceRule>| {
            rules
                .iter()
                .map(|r| format!("{} {r}", if r.allow { "allow" } else { "deny" }))
                .collect::<Vec<_>>()
        };
        let from_all = Emulator::from_list("a *:* rwm\n").unwrap();
        assert_eq!(
            text(from_all.transition(&target)),
            ["deny a *:* rwm", "allow c 1:3 rwm"]
        );
        // Exceptions taken away and added, permission by permission.
        let current = Emulator::from_list("c 1:3 rw\nc 1:11 w\n").unwrap();
        assert_eq!(
            text(current.transition(&target)),
            ["deny c 1:11 w", "allow c 1:3 m"]
        );
        // To allow-all: the `a` rule alone.
        let all = Emulator::new(&[rule(true, 'a', None, None, "rwm")]).unwrap();
        assert_eq!(text(current.transition(&all)), ["allow a *:* rwm"]);
    }
}
