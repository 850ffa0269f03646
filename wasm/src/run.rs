//! Loads a module or component and runs it with WASI.

use std::path::Path;
use wasmtime::component::ResourceTable;
use wasmtime::error::Context as _;
use wasmtime::{Engine, Linker, Module, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

/// Why the guest did not run to its end: the exit status and the words.
pub struct Failure {
    pub status: u8,
    pub message: String,
}

/// `wasmtime run`'s status for a trap (128 + SIGABRT).
const TRAP_STATUS: u8 = 134;

impl Failure {
    fn load(e: wasmtime::Error) -> Failure {
        Failure {
            status: 1,
            message: format!("{e:#}"),
        }
    }
}

/// Runs `path` with `args` as the guest's argv; returns its exit status.
pub fn run(path: &Path, args: &[String]) -> Result<u8, Failure> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("read {}", path.display()))
        .map_err(Failure::load)?;
    // Text is accepted whatever the name (crun converts `*.wat` only).
    let binary = wat::parse_bytes(&bytes)
        .context("WebAssembly text")
        .map_err(Failure::load)?;
    let engine = Engine::default();
    let ctx = context(args).map_err(Failure::load)?;
    let outcome = if is_component(&binary) {
        run_component(&engine, &binary, ctx)
    } else {
        run_module(&engine, &binary, ctx)
    };
    outcome.or_else(exit_or_trap)
}

/// The component-model layer field (bytes 6-7) is 0 for a core module.
fn is_component(binary: &[u8]) -> bool {
    binary.len() >= 8 && binary[6..8] != [0, 0]
}

/// The guest's WASI context: argv, this process's environment and stdio,
/// the cwd as `.` and the root as `/` (as crun's handlers preopen them).
fn context(args: &[String]) -> wasmtime::Result<WasiCtxBuilder> {
    let mut b = WasiCtxBuilder::new();
    b.args(args).inherit_stdio();
    let env: Vec<(String, String)> = std::env::vars_os()
        .map(|(k, v)| (k.to_string_lossy().into(), v.to_string_lossy().into()))
        .collect();
    b.envs(&env);
    b.preopened_dir(".", ".", FsPerms::ReadWrite)
        .context("preopen the current directory")?;
    b.preopened_dir("/", "/", FsPerms::ReadWrite)
        .context("preopen /")?;
    Ok(b)
}

/// A preview 1 module: its default export (`_start`) is called.
fn run_module(engine: &Engine, binary: &[u8], mut ctx: WasiCtxBuilder) -> wasmtime::Result<u8> {
    let module = Module::new(engine, binary).context("compile module")?;
    let mut linker: Linker<WasiP1Ctx> = Linker::new(engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |cx| cx)?;
    let mut store = Store::new(engine, ctx.build_p1());
    linker
        .module(&mut store, "", &module)
        .context("instantiate module")?;
    let start = linker
        .get_default(&mut store, "")
        .context("find the module's _start")?;
    start
        .typed::<(), ()>(&store)
        .context("the module's _start")?
        .call(&mut store, ())?;
    Ok(0)
}

struct P2 {
    ctx: WasiCtx,
    table: ResourceTable,
}

impl WasiView for P2 {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

/// A preview 2 component: its `wasi:cli/run` export is called.
fn run_component(engine: &Engine, binary: &[u8], mut ctx: WasiCtxBuilder) -> wasmtime::Result<u8> {
    use wasmtime::component::{Component, Linker};
    use wasmtime_wasi::p2::bindings::sync::Command;
    let component = Component::new(engine, binary).context("compile component")?;
    let mut linker: Linker<P2> = Linker::new(engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    let state = P2 {
        ctx: ctx.build(),
        table: ResourceTable::new(),
    };
    let mut store = Store::new(engine, state);
    let command =
        Command::instantiate(&mut store, &component, &linker).context("instantiate component")?;
    match command.wasi_cli_run().call_run(&mut store)? {
        Ok(()) => Ok(0),
        Err(()) => Ok(1),
    }
}

/// A guest's `proc_exit` arrives as an error; anything else that stopped a
/// running guest is a trap.
fn exit_or_trap(e: wasmtime::Error) -> Result<u8, Failure> {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return Ok(exit.0 as u8);
    }
    let status = match e.downcast_ref::<wasmtime::Trap>() {
        Some(_) => TRAP_STATUS,
        None => 1,
    };
    Err(Failure {
        status,
        message: format!("{e:#}"),
    })
}
