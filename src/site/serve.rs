//! `flagmaster serve`: the built-in site on its own, until interrupted, for
//! other clients (curl, the classic Python scripts) or several runs.

use std::io::Write;
use std::net::SocketAddr;

use super::{FaultConfig, SiteConfig, SiteTls};
use crate::cli::ServeArgs;
use crate::error::Error;
use crate::input::list;

pub fn run(args: ServeArgs) -> Result<u8, Error> {
    let (text, label) = match &args.list {
        Some(path) => (list::read_list(path)?, path.display().to_string()),
        None => (list::BUILTIN.to_string(), "built-in flags.txt".into()),
    };
    let names = list::parse(&text).names;
    if names.is_empty() {
        return Err(Error::EmptyList(format!("list {label}")));
    }
    let config = SiteConfig {
        names,
        delay_ms: args.delay_ms,
        jitter_ms: args.jitter_ms,
        error_rate: args.error_rate,
        image_size: args.image_size,
    };
    let faults = FaultConfig {
        fault: args.fault,
        fault_ms: args.fault_ms,
    };
    let mut description = super::describe(&config);
    if let Some(fault) = faults.fault {
        description += &format!(", fault {fault}");
    }
    let tls = match (args.tls, &args.cert, &args.key) {
        (false, ..) => None,
        (true, Some(cert), Some(key)) => Some(SiteTls::from_pem_files(cert, key)?),
        (true, ..) => Some(SiteTls::generate().map_err(Error::Setup)?),
    };
    let ca_pem = tls.as_ref().and_then(|tls| tls.ca_pem.as_deref());
    if let (Some(ca_pem), Some(path)) = (ca_pem, &args.ca_out) {
        std::fs::write(path, ca_pem).map_err(|source| Error::Unwritable {
            what: "--ca-out",
            path: path.clone(),
            source,
        })?;
    }
    let bind = SocketAddr::new(args.bind, args.port);
    let site = super::start_on(config, faults, bind, tls)?;
    // Whoever started us may read only the first line and close the pipe; that
    // must not stop the site.
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "Serving {description} at {}", site.base_url());
    let _ = writeln!(
        stdout,
        "Request count at {}/stats. Stop with Ctrl-C.",
        site.origin()
    );
    if let Some(path) = &args.ca_out {
        let _ = writeln!(stdout, "CA certificate in {}.", path.display());
    }
    let _ = stdout.flush();
    drop(stdout);
    site.wait();
    Ok(crate::report::exit::OK)
}
