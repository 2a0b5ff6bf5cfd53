//! Getting passphrases: from a file or the terminal, never argv or env.

use std::io::IsTerminal;
use std::path::Path;

use crate::crypto::Passphrase;
use anyhow::{bail, Context};

/// zxcvbn score below which a new passphrase is refused (0..=4).
const MIN_SCORE: u8 = 3;
const MIN_LEN: usize = 10;

pub fn from_file(path: &Path) -> anyhow::Result<Passphrase> {
    let mut bytes = std::fs::read(path)
        .with_context(|| format!("cannot read passphrase file {}", path.display()))?;
    while bytes.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        bytes.pop();
    }
    if bytes.is_empty() {
        bail!("passphrase file {} is empty", path.display());
    }
    Ok(Passphrase::new(bytes))
}

pub fn prompt(label: &str) -> anyhow::Result<Passphrase> {
    if !std::io::stdin().is_terminal() && std::fs::File::open("/dev/tty").is_err() {
        bail!("no terminal to ask for the passphrase on: use --passphrase-file FILE");
    }
    let s = rpassword::prompt_password(format!("{label}: "))
        .context("cannot read the passphrase from the terminal")?;
    Ok(Passphrase::new(s.into_bytes()))
}

/// The existing passphrase: from `file` or asked once.
pub fn existing(file: Option<&Path>) -> anyhow::Result<Passphrase> {
    match file {
        Some(f) => from_file(f),
        None => prompt("Passphrase"),
    }
}

/// A new passphrase: from `file`, or asked twice; weak ones are refused.
pub fn new(file: Option<&Path>, what: &str) -> anyhow::Result<Passphrase> {
    let p = match file {
        Some(f) => from_file(f)?,
        None => {
            let a = prompt(&format!("New {what}"))?;
            let b = prompt(&format!("Repeat the new {what}"))?;
            if a.as_bytes() != b.as_bytes() {
                bail!("the two passphrases differ; nothing was changed");
            }
            a
        }
    };
    check_strength(&p)?;
    Ok(p)
}

pub fn check_strength(p: &Passphrase) -> anyhow::Result<()> {
    let bytes = p.as_bytes();
    if bytes.is_empty() {
        bail!("the passphrase is empty; nothing was changed");
    }
    let text = String::from_utf8_lossy(bytes);
    if text.chars().count() < MIN_LEN {
        bail!("the passphrase is too short: use at least {MIN_LEN} characters (a few unrelated words work well); nothing was changed");
    }
    let est = zxcvbn::zxcvbn(&text, &[]);
    let score = est.score() as u8;
    if score < MIN_SCORE {
        let hint = est
            .feedback()
            .and_then(|f| f.warning().map(|w| w.to_string()))
            .unwrap_or_else(|| "it is easy to guess".into());
        bail!("the passphrase is too weak ({hint}); use a longer one, e.g. several unrelated words; nothing was changed");
    }
    Ok(())
}
