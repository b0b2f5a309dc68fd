//! `dispatch-sim --script <file.json> [--port N] [--exit-on-stdin-close]`
//!
//! Starts the simulator, prints one JSON line with its URLs and every account's tokens
//! once it is listening, then serves until killed. Everything binds 127.0.0.1 only.

use std::io::{Read, Write};
use std::process::ExitCode;

use dispatch_sim::{Script, Simulator};
use serde_json::json;

const USAGE: &str = "usage: dispatch-sim --script <file.json> [--port N] [--exit-on-stdin-close]";

struct Args {
    script: String,
    port: u16,
    exit_on_stdin_close: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut script = None;
    let mut port = 0;
    let mut exit_on_stdin_close = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--script" => script = Some(args.next().ok_or("--script needs a file")?),
            "--port" => {
                let value = args.next().ok_or("--port needs a number")?;
                port = value
                    .parse()
                    .map_err(|_| format!("--port: {value:?} is not a port number"))?;
            }
            "--exit-on-stdin-close" => exit_on_stdin_close = true,
            "-h" | "--help" => return Err(USAGE.to_string()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let script = script.ok_or_else(|| format!("--script is required\n{USAGE}"))?;
    Ok(Args {
        script,
        port,
        exit_on_stdin_close,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let script = match std::fs::read_to_string(&args.script)
        .map_err(|e| e.to_string())
        .and_then(|text| Script::from_json(&text).map_err(|e| e.to_string()))
    {
        Ok(script) => script,
        Err(e) => {
            eprintln!("dispatch-sim: cannot load {}: {e}", args.script);
            return ExitCode::from(2);
        }
    };
    let sim = match Simulator::start_on_port(script, args.port).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("dispatch-sim: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };

    let ready = json!({
        "baseUrl": sim.base_url(),
        "backendBase": sim.backend_base(),
        "issuer": sim.issuer(),
        "accounts": sim.all_tokens(),
    });
    let mut stdout = std::io::stdout().lock();
    if writeln!(stdout, "{ready}")
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(stdout);

    if args.exit_on_stdin_close {
        // Lets a parent that dies without killing us take us down with it.
        let _ = tokio::task::spawn_blocking(|| {
            let mut sink = [0u8; 1024];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        })
        .await;
        sim.shutdown();
        return ExitCode::SUCCESS;
    }
    // SIGTERM and SIGINT keep their default action: the process ends.
    std::future::pending::<()>().await;
    ExitCode::SUCCESS
}
