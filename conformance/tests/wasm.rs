//! WebAssembly containers (`run.oci.handler=wasm`): keel sets the container
//! up as for any program, then runs its module with keel's executor,
//! `keel-wasm` (built by scripts/wasm.sh). The modules are WebAssembly
//! text in `conformance/wasm/`. crun 1.8.1 (Debian 12's) has no wasm
//! handler (`crun --version` lacks `+WASM`): nothing to compare with here.

use keel_conformance::wasm::{self, executor};
use keel_conformance::{assert_no_leaks, Bundle, Output, TestEnv, COMMAND_TIMEOUT};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// keel with the executor named in its environment.
fn keel(env: &TestEnv, exe: &Path, args: &[&str]) -> Output {
    let exe = exe.to_string_lossy();
    env.spawn_env(args, &[("KEEL_WASM_EXECUTOR", &exe)])
        .and_then(|r| r.wait(COMMAND_TIMEOUT))
        .unwrap_or_else(|e| panic!("keel {args:?}: {e:#}"))
}

/// `keel run` of the bundle in the foreground.
fn run(env: &TestEnv, exe: &Path, b: &Bundle) -> Output {
    b.save().expect("save config");
    let dir = b.dir.to_string_lossy();
    keel(env, exe, &["run", "--bundle", &dir, &b.id])
}

/// A bundle running test module `name` from `dest` with the wasm handler.
fn module_bundle(env: &TestEnv, exe: &Path, id: &str, name: &str, dest: &str) -> Bundle {
    let mut b = env.bundle(id);
    wasm::bundle(&mut b, exe, name, dest);
    b
}

#[test]
fn hello_world_on_stdout() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let b = module_bundle(&env, &exe, "hello", "hello", "/hello.wasm");
    let o = run(&env, &exe, &b);
    o.expect_ok("run hello.wasm");
    assert_eq!(o.stdout, "hello from wasm\n", "{o}");
    assert_no_leaks(&env, "hello");
}

#[test]
fn args_and_env_reach_the_module() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let mut b = module_bundle(&env, &exe, "echo", "echo", "/bin/echo.wasm");
    b.set(
        "/process/args",
        json!(["/bin/echo.wasm", "one", "two words"]),
    );
    b.push("/process/env", json!("FOO=bar baz"));
    let o = run(&env, &exe, &b);
    o.expect_ok("run echo.wasm");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[..3], ["/bin/echo.wasm", "one", "two words"], "{o}");
    assert!(lines.contains(&"FOO=bar baz"), "{o}");
    assert!(lines.contains(&"TERM=xterm"), "{o}");
    // HOME as runc sets it (root's from /etc/passwd, here none: "/").
    assert!(lines.contains(&"HOME=/"), "{o}");
    assert_no_leaks(&env, "echo");
}

#[test]
fn file_written_in_a_bind_mounted_directory() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let data = env.dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir data");
    let mut b = module_bundle(&env, &exe, "write", "write", "/write.wasm");
    b.push(
        "/mounts",
        json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]}),
    );
    b.set("/process/cwd", json!("/data"));
    let o = run(&env, &exe, &b);
    o.expect_ok("run write.wasm");
    let written = std::fs::read_to_string(data.join("written.txt")).expect("read written.txt");
    assert_eq!(written, "written by wasm\n");
    assert_no_leaks(&env, "write");
}

#[test]
fn exit_code_from_proc_exit() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let b = module_bundle(&env, &exe, "exit7", "exit7", "/exit7.wasm");
    let o = run(&env, &exe, &b);
    assert_eq!(o.code, 7, "{o}");
    assert_no_leaks(&env, "exit7");
}

#[test]
fn a_trap_is_reported() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let b = module_bundle(&env, &exe, "trap", "trap", "/trap.wasm");
    let o = run(&env, &exe, &b);
    // wasmtime run's status for a trap (128 + SIGABRT).
    assert_eq!(o.code, 134, "{o}");
    assert!(
        o.stderr.contains("keel-wasm: /trap.wasm:") && o.stderr.contains("unreachable"),
        "{o}"
    );
    assert_no_leaks(&env, "trap");
}

#[test]
fn a_looping_module_runs_until_killed() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let b = module_bundle(&env, &exe, "loop", "loop", "/loop.wasm");
    b.save().expect("save config");
    let dir = b.dir.to_string_lossy();
    keel(&env, &exe, &["run", "-d", "--bundle", &dir, "loop"]).expect_ok("run -d loop.wasm");
    assert_eq!(env.status("loop"), "running");
    // The module's process is the executor, still running after a while.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(env.status("loop"), "running");
    // Plain `keel kill` (SIGTERM) stops it although it is pid 1.
    keel(&env, &exe, &["kill", "loop"]).expect_ok("kill");
    assert!(
        env.wait_status("loop", "stopped", Duration::from_secs(10)),
        "still {}",
        env.status("loop")
    );
    keel(&env, &exe, &["delete", "loop"]).expect_ok("delete");
    assert_no_leaks(&env, "loop");
}

#[test]
fn a_memory_limit_stops_unbounded_growth() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let mut b = module_bundle(&env, &exe, "grow", "grow", "/grow.wasm");
    let limit = 64 << 20;
    b.set(
        "/linux/resources/memory",
        json!({"limit": limit, "swap": limit}),
    );
    let o = run(&env, &exe, &b);
    // Killed by the OOM killer (128 + SIGKILL) well before the 4 GiB a
    // wasm32 memory may reach (where the module would exit 3).
    assert_eq!(o.code, 137, "{o}");
    assert_no_leaks(&env, "grow");
}

/// `mkdirat` denied with EPERM: the engine's own system calls are judged
/// by the container's filter, so the module's mkdir fails.
#[test]
fn seccomp_applies_to_the_module() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let bundle = |id: &str| {
        let mut b = module_bundle(&env, &exe, id, "mkdir", "/mkdir.wasm");
        b.push(
            "/mounts",
            json!({"destination": "/work", "type": "tmpfs", "source": "tmpfs"}),
        );
        b.set("/process/cwd", json!("/work"));
        b
    };
    let open = run(&env, &exe, &bundle("mkdir-open"));
    assert_eq!(open.code, 0, "without a filter: {open}");
    let mut b = bundle("mkdir-denied");
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]
        }),
    );
    let denied = run(&env, &exe, &b);
    // WASI's errno for EPERM ("perm").
    assert_eq!(denied.code, 63, "{denied}");
    assert_no_leaks(&env, "mkdir-open");
    assert_no_leaks(&env, "mkdir-denied");
}

/// A profile that denies what the executor is started with fails in words
/// that say so.
#[test]
fn seccomp_denying_the_executor_is_a_clear_error() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let mut b = module_bundle(&env, &exe, "noexec", "hello", "/hello.wasm");
    b.set(
        "/linux/seccomp",
        json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["execveat"], "action": "SCMP_ACT_ERRNO"}]
        }),
    );
    let o = run(&env, &exe, &b);
    o.expect_fail("run with execveat denied");
    assert!(
        o.stderr.contains("the seccomp profile must allow execveat")
            && o.stderr.contains("operation not permitted"),
        "{o}"
    );
    assert_no_leaks(&env, "noexec");
}

/// root without CAP_DAC_OVERRIDE (the default config's sets) cannot write
/// another user's 0600 file; with it, it can.
#[test]
fn capabilities_apply_to_the_module() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let data = env.dir.join("data");
    std::fs::create_dir_all(&data).expect("mkdir data");
    let file = data.join("written.txt");
    std::fs::write(&file, "theirs\n").expect("write written.txt");
    std::os::unix::fs::chown(&file, Some(1000), Some(1000)).expect("chown");
    std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .expect("chmod");
    let bundle = |id: &str| {
        let mut b = module_bundle(&env, &exe, id, "write", "/write.wasm");
        b.push(
            "/mounts",
            json!({"destination": "/data", "type": "bind", "source": data, "options": ["rbind", "rw"]}),
        );
        b.set("/process/cwd", json!("/data"));
        b
    };
    let o = run(&env, &exe, &bundle("nocap"));
    // WASI's errno for EACCES ("acces").
    assert_eq!(o.code, 2, "{o}");
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "theirs\n");
    let mut b = bundle("cap");
    let caps = json!(["CAP_DAC_OVERRIDE"]);
    for set in ["bounding", "effective", "permitted"] {
        b.set(&format!("/process/capabilities/{set}"), caps.clone());
    }
    run(&env, &exe, &b).expect_ok("run with CAP_DAC_OVERRIDE");
    assert_eq!(
        std::fs::read_to_string(&file).expect("read"),
        "written by wasm\n"
    );
    assert_no_leaks(&env, "nocap");
    assert_no_leaks(&env, "cap");
}

#[test]
fn webassembly_text_is_accepted() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let b = module_bundle(&env, &exe, "wat", "hello", "/hello.wat");
    let o = run(&env, &exe, &b);
    o.expect_ok("run hello.wat");
    assert_eq!(o.stdout, "hello from wasm\n", "{o}");
    assert_no_leaks(&env, "wat");
}

#[test]
fn a_preview2_component_runs() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let b = module_bundle(&env, &exe, "component", "component", "/component.wasm");
    let o = run(&env, &exe, &b);
    o.expect_ok("run component.wasm");
    assert_eq!(o.stdout, "hello from a component\n", "{o}");
    assert_no_leaks(&env, "component");
}

/// `module.wasm.image/variant=compat-smart` applies to a `.wasm`
/// entrypoint.
#[test]
fn compat_smart_runs_a_wasm_entrypoint_as_wasm() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let mut b = module_bundle(&env, &exe, "smart", "hello", "/hello.wasm");
    b.set(
        "/annotations",
        json!({"module.wasm.image/variant": "compat-smart"}),
    );
    let o = run(&env, &exe, &b);
    o.expect_ok("run");
    assert_eq!(o.stdout, "hello from wasm\n", "{o}");
    assert_no_leaks(&env, "smart");
}

/// `run.oci.handler=wasm-smart` leaves a native entrypoint native (a
/// sidecar in a wasm pod).
#[test]
fn wasm_smart_runs_a_native_entrypoint_natively() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let mut b = env.bundle("native");
    b.sh("echo native");
    b.set("/annotations", json!({"run.oci.handler": "wasm-smart"}));
    let o = run(&env, &exe, &b);
    o.expect_ok("run");
    assert_eq!(o.stdout, "native\n", "{o}");
    assert_no_leaks(&env, "native");
}

/// Without the executor, create fails naming it and leaves nothing.
#[test]
fn a_missing_executor_is_named() {
    let env = TestEnv::keel();
    let missing = env.dir.join("nowhere/keel-wasm");
    // Text needs no converting (and so no executor) to be installed.
    let b = module_bundle(&env, &missing, "noexe", "hello", "/hello.wat");
    let o = run(&env, &missing, &b);
    o.expect_fail("run without an executor");
    assert!(
        o.stderr.contains(&missing.display().to_string())
            && o.stderr.contains("KEEL_WASM_EXECUTOR"),
        "{o}"
    );
    assert_no_leaks(&env, "noexe");
}

/// A module that is not there fails create, naming it, as a missing
/// program does.
#[test]
fn a_missing_module_is_named() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let mut b = module_bundle(&env, &exe, "nomod", "hello", "/hello.wasm");
    b.set("/process/args", json!(["/gone.wasm"]));
    b.save().expect("save");
    let dir = b.dir.to_string_lossy();
    let o = keel(&env, &exe, &["create", "--bundle", &dir, "nomod"]);
    o.expect_fail("create without the module");
    assert!(
        o.stderr.contains("/gone.wasm") && o.stderr.contains("no such file or directory"),
        "{o}"
    );
    assert_no_leaks(&env, "nomod");
}

/// `features` says whether the handler can run (crun's
/// `run.oci.crun.wasm`) and lists its annotations as ones that change how
/// a container runs.
#[test]
fn features_lists_the_handler() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let o = keel(&env, &exe, &["features"]);
    let v = o.expect_ok("features").json().expect("features JSON");
    assert_eq!(v["annotations"]["run.oci.keel.wasm"], "true", "{v}");
    let unsafe_ones = &v["potentiallyUnsafeConfigAnnotations"];
    for a in ["run.oci.handler", "module.wasm.image/variant"] {
        assert!(
            unsafe_ones
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x == a)),
            "{v}"
        );
    }
    let missing = env.dir.join("nowhere/keel-wasm");
    let o = keel(&env, &missing, &["features"]);
    let v = o.expect_ok("features").json().expect("features JSON");
    assert_eq!(v["annotations"]["run.oci.keel.wasm"], "false", "{v}");
}

/// `podman run --annotation run.oci.handler=wasm --runtime keel`, with
/// `keel-wasm` installed next to keel (no environment variable: podman
/// runs the runtime with its own), the module from a volume.
#[test]
fn podman_runs_a_module_with_the_annotation() {
    use keel_conformance::engines::{busybox_tar, have, Sandbox, TempDir};
    let Some(exe) = executor() else { return };
    if !have("podman") {
        eprintln!("SKIPPED: podman not installed");
        return;
    }
    let t = Duration::from_secs(120);
    let dir = TempDir::new("wasm-podman").expect("temp dir");
    let d = dir.0.display().to_string();
    let keel = keel_conformance::Runtime::keel().bin;
    let keel = wasm::install_beside(&keel, &exe, &dir.0.join("bin")).expect("install keel");
    let modules = dir.0.join("modules");
    std::fs::create_dir_all(&modules).expect("mkdir modules");
    let b = Bundle {
        dir: dir.0.join("staging"),
        id: String::new(),
        config: json!({}),
    };
    wasm::install(&b, &exe, "echo", "/echo.wasm").expect("module");
    std::fs::rename(b.rootfs().join("echo.wasm"), modules.join("echo.wasm")).expect("move");
    std::fs::write(
        dir.0.join("containers.conf"),
        "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=1024:1024\"]\n\
         [engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n",
    )
    .expect("containers.conf");
    let tar = busybox_tar(&dir.0).expect("busybox tar");
    let sb = Sandbox::new(&[]).expect("sandbox");
    let podman = format!(
        "CONTAINERS_CONF={d}/containers.conf podman --root {d}/root --runroot {d}/runroot \
         --tmpdir {d}/tmp --runtime {}",
        keel.display()
    );
    let o = sb.sh(
        &format!("{podman} import {} localhost/wasm-busybox", tar.display()),
        t,
    );
    assert!(o.ok(), "podman import: {o}");
    let cgroup = format!("keel-wasm-podman-{}", std::process::id());
    let o = sb.sh(
        &format!(
            "{podman} run --rm --pull never --network none --cgroup-parent /{cgroup} \
             --annotation run.oci.handler=wasm -e GREETING=hi -v {}:/wasm:ro \
             localhost/wasm-busybox /wasm/echo.wasm from-podman",
            modules.display()
        ),
        t,
    );
    let _ = sb.sh(&format!("{podman} rm -a -f -t 0"), t);
    keel_conformance::engines::remove_cgroup_tree(&cgroup);
    assert!(o.ok(), "podman run: {o}");
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert_eq!(lines[..2], ["/wasm/echo.wasm", "from-podman"], "{o}");
    assert!(lines.contains(&"GREETING=hi"), "{o}");
}

/// The keel shim under containerd runs a task annotated
/// `run.oci.handler=wasm` (`ctr run --annotation`), with `keel-wasm`
/// installed next to the shim.
#[test]
fn the_shim_runs_a_module_with_the_annotation() {
    use keel_conformance::containerd::{self, Containerd, KEEL_SHIM};
    let Some(exe) = executor() else { return };
    if let Some(why) = containerd::unavailable() {
        eprintln!("SKIPPED: {why}");
        return;
    }
    let dir = keel_conformance::engines::TempDir::new("wasm-shim").expect("temp dir");
    let shim = containerd::shim_dir().join("containerd-shim-keel-v2");
    let bin = dir.0.join("bin");
    wasm::install_beside(&shim, &exe, &bin).expect("install the shim");
    let modules = dir.0.join("modules");
    let b = Bundle {
        dir: dir.0.join("staging"),
        id: String::new(),
        config: json!({}),
    };
    wasm::install(&b, &exe, "echo", "/echo.wasm").expect("module");
    std::fs::create_dir_all(&modules).expect("mkdir modules");
    std::fs::rename(b.rootfs().join("echo.wasm"), modules.join("echo.wasm")).expect("move");
    let c = Containerd::start_with_path(&[bin]).expect("start containerd");
    let mount = format!(
        "type=bind,src={},dst=/wasm,options=rbind:ro",
        modules.display()
    );
    let out = c.run_rm(
        KEEL_SHIM,
        "wasm1",
        &[
            "--annotation",
            "run.oci.handler=wasm",
            "--env",
            "GREETING=hi",
            "--mount",
            &mount,
        ],
        &["/wasm/echo.wasm", "from-ctr"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines[..2], ["/wasm/echo.wasm", "from-ctr"], "{out:?}");
    assert!(lines.contains(&"GREETING=hi"), "{out:?}");
}

/// The running executor is a read-only view of the host's binary (a
/// container process cannot write it through /proc/<pid>/exe:
/// CVE-2019-5736), and holds no fd of the runtime's (only stdio and the
/// directories it preopens for the guest).
#[test]
fn the_executor_runs_read_only_without_runtime_fds() {
    let Some(exe) = executor() else { return };
    let env = TestEnv::keel();
    let b = module_bundle(&env, &exe, "view", "loop", "/loop.wasm");
    b.save().expect("save config");
    let dir = b.dir.to_string_lossy();
    keel(&env, &exe, &["run", "-d", "--bundle", &dir, "view"]).expect_ok("run -d loop.wasm");
    let pid = env.state("view").expect("state")["pid"]
        .as_i64()
        .expect("pid");
    let image = format!("/proc/{pid}/exe");
    let vfs = nix::sys::statvfs::statvfs(image.as_str()).expect("statvfs exe");
    assert!(
        vfs.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY),
        "the executor runs from a writable mount"
    );
    let write = std::fs::OpenOptions::new().write(true).open(&image);
    assert!(write.is_err(), "opened the running executor for writing");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("read fds")
        .filter_map(|e| {
            let e = e.ok()?;
            let n: i32 = e.file_name().to_str()?.parse().ok()?;
            let target = std::fs::read_link(e.path()).ok()?;
            (n > 2).then(|| format!("{n} -> {}", target.display()))
        })
        .collect();
    let runtime = env.root.display().to_string();
    for fd in &fds {
        assert!(
            !fd.contains("keel-wasm") && !fd.contains(&runtime) && !fd.contains("exec.fifo"),
            "runtime fd in the executor: {fds:?}"
        );
    }
    keel(&env, &exe, &["delete", "-f", "view"]).expect_ok("delete -f");
    assert_no_leaks(&env, "view");
}
