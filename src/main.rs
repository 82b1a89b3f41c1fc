//! The `swarmwise` binary; the commands live in [`swarmwise::cli`].

fn main() -> std::process::ExitCode {
    swarmwise::cli::run()
}
