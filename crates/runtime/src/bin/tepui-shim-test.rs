//! A stand-in for the `tepui` binary in this crate's tests: `shim ...` runs the shim as
//! `tepui shim` will (`shim-without-spawner ...` the same, except that its spawner exits at
//! once); `launch ROOT SPEC.json...` plays an agent that launches tasks, prints
//! `launched ID PID` for each and then waits to be killed.

use std::ffi::OsString;

fn main() {
    let args: Vec<OsString> = std::env::args_os().collect();
    match args.get(1).and_then(|a| a.to_str()) {
        Some("shim") => std::process::exit(tepui_runtime::shim_main(args[2..].iter().cloned())),
        // A shim program whose spawner dies at once: the agent must fall back to executing it.
        Some("shim-without-spawner") if args.iter().any(|a| a == "--spawner") => std::process::exit(3),
        Some("shim-without-spawner") => std::process::exit(tepui_runtime::shim_main(args[2..].iter().cloned())),
        Some("launch") if args.len() >= 4 => launch(&args[2], &args[3..]),
        _ => {
            eprintln!("usage: tepui-shim-test shim ARGS | launch ROOT SPEC.json...");
            std::process::exit(2);
        }
    }
}

fn launch(root: &OsString, specs: &[OsString]) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let runtime = tepui_runtime::Runtime::new(root, tepui_runtime::RuntimeConfig::default()).expect("runtime");
        for path in specs {
            let bytes = std::fs::read(path).expect("read spec");
            let spec: tepui_runtime::TaskSpec = serde_json::from_slice(&bytes).expect("parse spec");
            let h = runtime.launch(&spec).await.expect("launch");
            println!("launched {} {}", h.id, h.pid);
        }
        println!("ready");
        std::future::pending::<()>().await;
    });
}
