//! `loadtest`: runs one scenario against a gateway on loopback and reports (see `loadtest --help`).
//!
//! Exit status: 0 ok; 1 when messages were lost, duplicated or reordered, connections failed, or the
//! run hit its deadline; 2 on a usage error. The last stdout line is `RESULT <json>`.

use std::io::Write;

use clap::Parser;
use loadtest::{
    cli::{Cli, Command, Scenario},
    control, coordinator, plot,
};

fn main() {
    let cli = Cli::parse();
    let (scenario, opts) = match cli.command {
        Command::Idle(o) => (Scenario::Idle, o),
        Command::Echo(o) => (Scenario::Echo, o),
        Command::Dm(o) => (Scenario::Dm, o),
        Command::Crossnode(o) => (Scenario::Crossnode, o),
        Command::Fanout(o) => (Scenario::Fanout, o),
        Command::Churn(o) => (Scenario::Churn, o),
        Command::Ramp(o) => (Scenario::Ramp, o),
        Command::Worker => {
            let code = runtime().block_on(control::child_main());
            // Exit at once: the runtime would otherwise wait for its blocked stdin reader.
            std::process::exit(code);
        }
    };
    let targets = match opts.validate(scenario) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("loadtest: {e}");
            std::process::exit(2);
        }
    };
    let report = runtime().block_on(coordinator::run(scenario, opts.clone(), targets));
    let mut code = report.exit_code();
    print!("{}", report.summary());
    if let Some(path) = &opts.json {
        let text = serde_json::to_string_pretty(&report).expect("report serialises");
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("loadtest: writing {}: {e}", path.display());
            code = code.max(1);
        }
    }
    if let Some(path) = &opts.svg {
        let title = format!(
            "loadtest {} ({} connections)",
            report.scenario, report.connected
        );
        // Seconds of the measuring phase only, not the drain after it.
        let measured: Vec<_> = report
            .timeline
            .iter()
            .copied()
            .filter(|p| (p.t as f64) < opts.duration)
            .collect();
        if let Err(e) = plot::write_svg(path, &title, &measured) {
            eprintln!("loadtest: {e}");
            code = code.max(1);
        }
    }
    println!("{}", report.result_line());
    let _ = std::io::stdout().flush();
    std::process::exit(code);
}

/// The multi-thread runtime every run uses.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
