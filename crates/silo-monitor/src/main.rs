//! The `silo-monitor` binary: parse the command line, optionally detach,
//! then run the monitor until the container has exited.

fn main() {
    let args = match silo_monitor::parse(std::env::args_os().skip(1)) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("silo-monitor: {e}\n{}", silo_monitor::USAGE);
            std::process::exit(2);
        }
    };
    let ready = if args.detach {
        match silo_monitor::detach() {
            Ok(fd) => Some(fd),
            Err(e) => {
                eprintln!("silo-monitor: --detach: fork: {e}");
                std::process::exit(1);
            }
        }
    } else {
        None
    };
    std::process::exit(silo_monitor::run(&args, ready));
}
