//! `linux.intelRdt`. This machine has no resctrl, so what runs here are the
//! refusals; the group handling itself (closID rules, schemata, tasks,
//! monitoring groups, delete) is unit-tested on a fake resctrl tree
//! (libcontainer/src/intelrdt.rs).

use keel_conformance::{assert_no_leaks, require_runc, TestEnv};
use serde_json::json;

fn resctrl_mounted() -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(" - resctrl "))
}

/// runc 1.1.5 has this rule (configs/validate: intelrdtCheck): a closID is
/// one path component. Same words, same exit.
#[test]
fn invalid_clos_id_as_runc() {
    let Some(runc) = require_runc!() else {
        return;
    };
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let mut b = env.bundle("rdt-clos");
        b.set("/linux/intelRdt", json!({"closID": ".."}));
        let o = env.run(&b);
        o.expect_fail("closID ..");
        assert!(
            o.stderr.contains(r#"invalid intelRdt.ClosID \"..\""#),
            "{o}"
        );
        assert_no_leaks(&env, "rdt-clos");
    }
}

/// Without resctrl the container is refused, not run without its cache and
/// bandwidth limits, in the words of runc's validator
/// (libcontainer/configs/validate/validator.go, intelrdtCheck). runc 1.1.5
/// runs it without a group instead, so this is keel-only.
#[test]
fn refused_without_resctrl() {
    if resctrl_mounted() {
        eprintln!("SKIPPED refused_without_resctrl: this host has resctrl mounted");
        return;
    }
    let env = TestEnv::keel();
    for rdt in [
        json!({}),
        json!({"closID": "shared"}),
        json!({"schemata": ["L3:0=f"]}),
    ] {
        let mut b = env.bundle("rdt-none");
        b.set("/linux/intelRdt", rdt);
        let o = env.run(&b);
        o.expect_fail("no resctrl");
        assert!(
            o.stderr.contains(
                "intelRdt is specified in config, but Intel RDT is not supported or enabled"
            ),
            "{o}"
        );
        assert_no_leaks(&env, "rdt-none");
    }
}

/// `update --l3-cache-schema` / `--mem-bw-schema` on a machine without the
/// feature: runc's words (update.go) and exit, checked before anything
/// changes; the container keeps running.
#[test]
fn update_schemata_without_the_feature_as_runc() {
    if resctrl_mounted() {
        eprintln!("SKIPPED update_schemata_without_the_feature_as_runc: this host has resctrl");
        return;
    }
    let Some(runc) = require_runc!() else {
        return;
    };
    for env in [TestEnv::keel(), TestEnv::new(runc)] {
        let rt = env.rt.name;
        let mut b = env.bundle("rdt-up");
        b.set("/process/args", json!(["sleep", "1000"]));
        env.run_with(&b, &["--detach"]).expect_ok("run -d");
        for (flag, value, words) in [
            (
                "--l3-cache-schema",
                "L3:0=f",
                "Intel RDT/CAT: l3 cache schema is not enabled",
            ),
            (
                "--mem-bw-schema",
                "MB:0=50",
                "Intel RDT/MBA: memory bandwidth schema is not enabled",
            ),
        ] {
            let o = env.cmd(&["update", flag, value, "rdt-up"]);
            assert_eq!(o.code, 1, "{rt} {flag}: {o}");
            assert!(o.stderr.contains(words), "{rt} {flag}: {o}");
        }
        assert_eq!(env.status("rdt-up"), "running", "{rt}");
        env.cmd(&["delete", "--force", "rdt-up"])
            .expect_ok("delete --force");
        assert_no_leaks(&env, "rdt-up");
    }
}
