//! `wat2wasm IN OUT`: WebAssembly text to binary, with the executor's own
//! parser, so that keel's tests keep their modules as text in the
//! repository and still run binary `.wasm` files (no toolchain download).

use wasmtime::error::Context as _;

fn main() -> wasmtime::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [input, output] = args.as_slice() else {
        wasmtime::bail!("usage: wat2wasm IN.wat OUT.wasm");
    };
    let binary = wat::parse_file(input).with_context(|| format!("parse {input}"))?;
    std::fs::write(output, binary).with_context(|| format!("write {output}"))?;
    Ok(())
}
