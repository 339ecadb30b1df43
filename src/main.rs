//! The `lifeboat` command: parses arguments, runs a library operation, maps
//! the outcome to an exit code. All logic lives in the library.

mod cli;

fn main() {
    std::process::exit(cli::main());
}
