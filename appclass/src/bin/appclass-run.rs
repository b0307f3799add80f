//! `appclass-run NAME CMD [ARGS...]`: runs CMD as UPMT application NAME (the same launcher
//! as `upmt run --app NAME -- CMD ARGS`), for scripts and tests.

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let (Some(name), argv) = (args.next(), args.collect::<Vec<OsString>>()) else {
        eprintln!("usage: appclass-run NAME CMD [ARGS...]");
        return ExitCode::from(2);
    };
    let argv: Vec<OsString> = match argv.first() {
        Some(a) if a == "--" => argv.into_iter().skip(1).collect(),
        _ => argv,
    };
    let Some(name) = name.to_str() else {
        eprintln!("appclass-run: application name is not UTF-8");
        return ExitCode::from(2);
    };
    let e = appclass::run_in_app(name, &argv);
    eprintln!("appclass-run: {e}");
    ExitCode::from(127)
}
