use keel_conformance::*;

#[test]
fn smoke() {
    let env = TestEnv::keel();
    let mut b = env.bundle("smoke");
    b.sh("echo hello $$; hostname");
    let o = env.run(&b);
    println!("{o}");
    o.expect_ok("run");
    assert_no_leaks(&env, "smoke");
}
