//! The `flagmaster` binary: everything is in the library.

fn main() -> std::process::ExitCode {
    flagmaster::main()
}
