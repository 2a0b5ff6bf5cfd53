//! The command line: one file per subcommand. All output formatting lives here;
//! `anyhow` is used only at this edge.

mod audit;
mod audit_export;
mod audit_format;
mod audit_verify;
mod info;
mod init;
mod log;
mod ls;
mod mount;
mod mount_options;
mod passphrase;
mod passwd;
mod prune;
mod recover;
mod remote;
mod repair;
mod replicate;
mod restore;
mod retention;
mod status;
mod time_spec;
mod umount;
mod util;
mod verify;

use clap::{Parser, Subcommand};

const ABOUT: &str =
    "Encrypted, versioned filesystem for shares that hold protected health information";
const LONG_ABOUT: &str = "\
phivault mounts an encrypted store as an ordinary directory. Everything written \
through the mount is compressed and encrypted (AES-256-GCM-SIV, keys from \
Argon2id passphrases) before it reaches a disk, names included; every close \
after a write, fsync, truncate, rename-over and delete is kept as a version.

Quick start:  phivault mount ~/phi-store ~/phi    (creates the store on first use)
Unmount:      phivault umount ~/phi

Passphrases are read from the terminal, or from a file named with \
--passphrase-file (never from the command line or the environment).";

#[derive(Parser)]
#[command(name = "phivault", version, about = ABOUT, long_about = LONG_ABOUT)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Init(init::Args),
    Mount(mount::Args),
    Umount(umount::Args),
    Passwd(passwd::Args),
    Info(info::Args),
    Log(log::Args),
    Prune(prune::Args),
    Ls(ls::Args),
    Restore(restore::Args),
    Retention(retention::Args),
    Audit(audit::Args),
    Remote(remote::Args),
    Replicate(replicate::Args),
    Status(status::Args),
    Recover(recover::Args),
    Verify(verify::Args),
    Repair(repair::Args),
    #[command(hide = true)]
    Daemon(mount::DaemonArgs),
}

pub fn main() -> i32 {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Mount(_) | Command::Daemon(_)) {
        // Commands that print (`log | head`) end quietly when the reader
        // goes, as other Unix tools do: `println!` would panic on the
        // broken pipe instead. The daemon keeps ignoring SIGPIPE.
        // SAFETY: sets the disposition of one signal, before any thread
        // starts.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    }
    // What a command that succeeded exits with (`audit verify`: what it found).
    let mut status = 0;
    let result = match cli.command {
        Command::Init(a) => init::run(a),
        Command::Mount(a) => mount::run(a),
        Command::Umount(a) => umount::run(a),
        Command::Passwd(a) => passwd::run(a),
        Command::Info(a) => info::run(a),
        Command::Log(a) => log::run(a),
        Command::Prune(a) => prune::run(a),
        Command::Ls(a) => ls::run(a),
        Command::Restore(a) => restore::run(a),
        Command::Retention(a) => retention::run(a),
        Command::Audit(a) => audit::run(a).map(|code| status = code),
        Command::Remote(a) => remote::run(a),
        Command::Replicate(a) => replicate::run(a),
        Command::Status(a) => status::run(a),
        Command::Recover(a) => recover::run(a),
        Command::Verify(a) => verify::run(a),
        Command::Repair(a) => repair::run(a),
        Command::Daemon(a) => mount::run_daemon(a),
    };
    match result {
        Ok(()) => status,
        Err(e) => {
            if is_broken_pipe(&e) {
                return 0;
            }
            eprintln!("phivault: {}", util::describe(&e));
            1
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
