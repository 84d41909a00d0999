//! A stand-in for the `tepui` binary in this crate's tests: `shim ...` runs the task shim as
//! `tepui shim` does.

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("shim") => std::process::exit(tepui_runtime::shim_main(args[2..].iter().cloned())),
        _ => {
            eprintln!("usage: tepui-agent-shim-test shim ARGS");
            std::process::exit(2);
        }
    }
}
