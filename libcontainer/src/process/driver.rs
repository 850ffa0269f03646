//! The parent's side of the sync protocol (the table in [`super::sync`]):
//! one loop, one handler per message, for both the init (`create`) and an
//! `exec`'d process, as runc's `parseSync` serves both of its.

use super::reap::HalfMade;
use super::sync::{init_error, Channel, Msg};
use crate::error::{Error, Result, SysContext};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::Pid;
use std::os::fd::OwnedFd;

/// How a child's setup ends well.
#[derive(PartialEq, Eq)]
pub(crate) enum End {
    /// The init sends `Ready`, loads its seccomp filter, closes the
    /// channel and waits on exec.fifo.
    Ready,
    /// The process execs its program, which closes the channel.
    Exec,
}

/// What differs between the children the parent drives: a handler for each
/// message one of them sends. A message whose handler is not overridden is
/// a protocol error.
pub(crate) trait Handler {
    /// How this child's setup ends.
    const END: End;

    /// Puts the new child `pid` in place (cgroups, id maps) before it is
    /// first told to go on.
    fn place(&mut self, pid: Pid) -> Result<()>;

    /// `MapIds`: writes the id maps of `pid`'s new user namespace.
    fn map_ids(&mut self, _pid: Pid) -> Result<()> {
        Err(unexpected(&Msg::MapIds))
    }

    /// `IdmappedSource(i)`: the idmapped tree of mount `i`'s source, as
    /// `pid` sees it.
    fn idmapped_source(&mut self, _pid: Pid, i: usize) -> Result<OwnedFd> {
        Err(unexpected(&Msg::IdmappedSource(i)))
    }

    /// `RunHooks`: runs the hooks due before pivot_root.
    fn run_hooks(&mut self, _pid: Pid) -> Result<()> {
        Err(unexpected(&Msg::RunHooks))
    }

    /// `Ready` (for `END == Ready`): the parent's last step; it returns at
    /// the EOF that follows.
    fn ready(&mut self, _pid: Pid) -> Result<()> {
        Ok(())
    }

    /// `SeccompListener`: hands `pid`'s notification `listener` over.
    fn seccomp_listener(&mut self, _pid: Pid, _listener: OwnedFd) -> Result<()> {
        Err(unexpected(&Msg::SeccompListener))
    }
}

/// A message the child had no business sending at that point.
fn unexpected(msg: &Msg) -> Error {
    Error::InitDied(format!("protocol error: unexpected {msg:?}"))
}

/// Drives the just-forked `child` through its setup over `chan` until it
/// ends as `H::END` says. On an error the caller drops `child`, which kills
/// and reaps it; on success it releases it.
pub(crate) fn drive<H: Handler>(chan: &Channel, child: &mut HalfMade, h: &mut H) -> Result<()> {
    h.place(child.pid())?;
    let go_on = || {
        chan.send(&Msg::Continue)
            .ctx(|| "sync: send continue".into())
    };
    go_on()?;
    let mut forked_again = false;
    let mut ready = false;
    loop {
        let msg = chan.recv().ctx(|| "sync: receive".into())?;
        match msg {
            Some(Msg::MapIds) => {
                h.map_ids(child.pid())?;
                go_on()?;
            }
            Some(Msg::IdmappedSource(i)) => {
                let tree = h.idmapped_source(child.pid(), i)?;
                go_on()?;
                chan.send_fd(&tree)
                    .ctx(|| "sync: send the idmapped source".into())?;
            }
            Some(Msg::RunHooks) => {
                h.run_hooks(child.pid())?;
                go_on()?;
            }
            Some(Msg::SeccompListener) => {
                let listener = chan
                    .recv_fd()
                    .ctx(|| "sync: receive the seccomp listener".into())?;
                h.seccomp_listener(child.pid(), listener)?;
                go_on()?;
            }
            Some(Msg::InitPid(pid)) if !forked_again => {
                forked_again = true;
                child.handed_over(Pid::from_raw(pid));
            }
            Some(Msg::Ready) if H::END == End::Ready && !ready => {
                ready = true;
                h.ready(child.pid())?;
            }
            None if H::END == End::Exec || ready => return Ok(()),
            None => return Err(Error::InitDied(describe_exit(child.pid()))),
            Some(Msg::Failed { errno, context }) => return Err(init_error(errno, context)),
            Some(other @ (Msg::Continue | Msg::InitPid(_) | Msg::Ready)) => {
                return Err(unexpected(&other))
            }
        }
    }
}

/// How `pid` ended, for an error (it is reaped here).
fn describe_exit(pid: Pid) -> String {
    match waitpid(pid, None) {
        Ok(WaitStatus::Exited(_, code)) => format!("exit status {code}"),
        Ok(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig}"),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("wait: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the handlers called; ends with `Ready` or at EOF.
    struct Probe<const READY: bool>(Vec<&'static str>);

    impl<const READY: bool> Handler for Probe<READY> {
        const END: End = if READY { End::Ready } else { End::Exec };

        fn place(&mut self, _pid: Pid) -> Result<()> {
            self.0.push("place");
            Ok(())
        }

        fn run_hooks(&mut self, _pid: Pid) -> Result<()> {
            self.0.push("hooks");
            Ok(())
        }

        fn idmapped_source(&mut self, _pid: Pid, _i: usize) -> Result<OwnedFd> {
            self.0.push("idmapped source");
            let (r, _w) = nix::unistd::pipe().expect("pipe");
            Ok(r)
        }
    }

    /// A pid no process can have (above the kernel's PID_MAX_LIMIT, 2^22):
    /// the guard's SIGKILL and wait fail harmlessly. No child is forked:
    /// a fork in this multi-threaded test binary would hold copies of
    /// other tests' fds until it execs.
    fn nobody(n: i32) -> Pid {
        Pid::from_raw(i32::MAX - n)
    }

    struct Run {
        result: Result<()>,
        called: Vec<&'static str>,
        /// What the parent sent.
        got: Vec<Msg>,
        child: HalfMade,
    }

    /// Drives a stand-in for a forked child: a pid to guard, and a thread
    /// that plays the child's side of the channel with `script`.
    fn run<const READY: bool>(child: Pid, script: Vec<Msg>) -> Run {
        let (ours, theirs) = Channel::pair().expect("socketpair");
        let mut child = HalfMade::new(child);
        let player = std::thread::spawn(move || {
            let mut got = Vec::new();
            got.extend(theirs.recv().ok().flatten());
            for msg in script {
                let answered = matches!(msg, Msg::MapIds | Msg::RunHooks | Msg::IdmappedSource(_));
                let fd_follows = matches!(msg, Msg::IdmappedSource(_));
                if theirs.send(&msg).is_err() {
                    break;
                }
                if answered {
                    got.extend(theirs.recv().ok().flatten());
                }
                // The fd that follows is recorded as the request it answers.
                if fd_follows && theirs.recv_fd().is_ok() {
                    got.push(msg);
                }
            }
            got
        });
        let mut probe = Probe::<READY>(Vec::new());
        let result = drive(&ours, &mut child, &mut probe);
        drop(ours);
        let got = player.join().expect("the child's thread");
        Run {
            result,
            called: probe.0,
            got,
            child,
        }
    }

    #[test]
    fn each_message_goes_to_its_handler_and_is_answered() {
        let r = run::<true>(nobody(0), vec![Msg::RunHooks, Msg::Ready]);
        assert!(r.result.is_ok(), "{:?}", r.result);
        assert_eq!(r.called, ["place", "hooks"]);
        assert_eq!(r.got, [Msg::Continue, Msg::Continue]);
    }

    /// The tree of an idmapped source comes after the `Continue`.
    #[test]
    fn an_idmapped_source_is_sent_after_continue() {
        let r = run::<true>(nobody(0), vec![Msg::IdmappedSource(2), Msg::Ready]);
        assert!(r.result.is_ok(), "{:?}", r.result);
        assert_eq!(r.called, ["place", "idmapped source"]);
        assert_eq!(
            r.got,
            [Msg::Continue, Msg::Continue, Msg::IdmappedSource(2)]
        );
    }

    /// The init loads its filter after Ready: create ends at the EOF of
    /// its close, and a failure to load is still reported.
    #[test]
    fn init_ends_at_the_eof_after_ready() {
        let r = run::<true>(nobody(0), vec![Msg::Ready]);
        assert!(r.result.is_ok(), "{:?}", r.result);
        let failed = Msg::Failed {
            errno: libc::EINVAL,
            context: "linux.seccomp: seccomp(SECCOMP_SET_MODE_FILTER, 0x4)".into(),
        };
        let r = run::<true>(nobody(0), vec![Msg::Ready, failed]);
        let err = r.result.map_err(|e| e.to_string()).unwrap_err();
        assert!(err.contains("SECCOMP_SET_MODE_FILTER"), "{err}");
        let r = run::<true>(nobody(0), vec![Msg::Ready, Msg::Ready]);
        assert!(matches!(r.result, Err(Error::InitDied(m)) if m.contains("unexpected Ready")));
    }

    #[test]
    fn exec_ends_when_the_channel_closes() {
        let r = run::<false>(nobody(0), vec![Msg::RunHooks]);
        assert!(r.result.is_ok(), "{:?}", r.result);
        assert_eq!(r.called, ["place", "hooks"]);
        drop(r.child);
    }

    #[test]
    fn an_unexpected_message_is_the_same_error_for_both() {
        let words = "container init exited unexpectedly during setup \
                     (protocol error: unexpected MapIds)";
        for r in [
            run::<true>(nobody(0), vec![Msg::MapIds]),
            run::<false>(nobody(0), vec![Msg::MapIds]),
        ] {
            assert_eq!(r.result.map_err(|e| e.to_string()), Err(words.into()));
        }
        let r = run::<false>(nobody(0), vec![Msg::Ready]);
        assert!(matches!(r.result, Err(Error::InitDied(m)) if m.contains("unexpected Ready")));
    }

    #[test]
    fn the_grandchild_is_guarded_after_init_pid() {
        // The middle child exits on its own; the grandchild is guarded.
        let grandchild = nobody(1);
        let again = Msg::InitPid(grandchild.as_raw());
        let r = run::<true>(nobody(0), vec![Msg::InitPid(grandchild.as_raw()), again]);
        assert!(matches!(r.result, Err(Error::InitDied(m)) if m.contains("unexpected InitPid")));
        assert_eq!(r.child.pid(), grandchild);
    }

    #[test]
    fn a_failure_is_the_childs_error() {
        let failed = Msg::Failed {
            errno: libc::ENOENT,
            context: "mount /proc".into(),
        };
        let r = run::<true>(nobody(0), vec![failed]);
        assert!(matches!(
            r.result,
            Err(Error::Init { context, errno: Some(nix::errno::Errno::ENOENT) })
                if context == "mount /proc"
        ));
    }
}
