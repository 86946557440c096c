//! What `#[derive(Event)]` and `#[handler]` accept (`tests/ui/pass`, `tests/ui/protobuf`) and
//! what they reject, with the compiler's message checked in under `tests/ui/fail/*.stderr`.
//!
//! The `.stderr` snapshots are made with rustc 1.95 (`SNAPSHOT_RUSTC`, below);
//! regenerate them with `TRYBUILD=overwrite cargo test -p pubsub-ui-tests` and read every diff.

/// The compiler the `.stderr` snapshots were made with. Other versions word and lay out
/// diagnostics differently, so the compile-fail half only runs on this one.
const SNAPSHOT_RUSTC: &str = "rustc 1.95.";

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass/*.rs");
    t.pass("tests/ui/protobuf/*.rs");
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    if rustc.starts_with(SNAPSHOT_RUSTC) {
        t.compile_fail("tests/ui/fail/*.rs");
    } else {
        // CI (scripts/test.sh sets this) must check the snapshots, never skip them.
        assert!(
            std::env::var_os("PUBSUB_REQUIRE_UI").is_none(),
            "PUBSUB_REQUIRE_UI is set but this is {}, not the {SNAPSHOT_RUSTC}x the snapshots need",
            rustc.trim()
        );
        eprintln!(
            "skipping tests/ui/fail: snapshots are for {SNAPSHOT_RUSTC}x, this is {}",
            rustc.trim()
        );
    }
}
