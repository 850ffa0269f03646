//! containerd-shim-keel-v2. The Task service lands with its own issue; until
//! then the binary says so instead of pretending to work.

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "containerd-shim-keel-v2 {} is not implemented yet (libkeel {} is); use the runc shim with BinaryName=keel",
        env!("CARGO_PKG_VERSION"),
        env!("CARGO_PKG_VERSION")
    )
}
