use std::path::{Path, PathBuf};

use anyhow::Context;

/// "cause: detail" chain in one line, as users read it.
pub fn describe(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

pub fn absolute(p: &Path) -> anyhow::Result<PathBuf> {
    if p.is_absolute() {
        Ok(p.to_path_buf())
    } else {
        Ok(std::env::current_dir()
            .context("cannot read the current directory")?
            .join(p))
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

pub fn ratio(num: u64, den: u64) -> String {
    if den == 0 {
        "-".into()
    } else {
        format!("{:.2}x", num as f64 / den as f64)
    }
}

/// Parses "64K", "1M", "65536" into bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mul) = match s.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => {
            let unit = s[i..].to_ascii_lowercase();
            let mul = match unit.trim_end_matches("ib").trim_end_matches('b') {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                _ => return Err(format!("unknown size unit in '{s}' (use K, M or G)")),
            };
            (&s[..i], mul)
        }
        None => (s, 1),
    };
    num.trim()
        .parse::<u64>()
        .map(|n| n * mul)
        .map_err(|_| format!("'{s}' is not a size"))
}

/// The source (store path) of the phivault mount at `mountpoint`, if any.
pub fn mounted_store(mountpoint: &Path) -> Option<String> {
    mounts()
        .into_iter()
        .find(|(_, mp, _)| Path::new(mp) == mountpoint)
        .map(|(src, _, _)| src)
}

/// Where `store` is mounted, if it is.
pub fn mount_of_store(store: &Path) -> Option<String> {
    let s = store.to_string_lossy();
    // The kernel lists FUSE mounts as fstype "fuse" (or "fuse.SUBTYPE").
    mounts()
        .into_iter()
        .find(|(src, _, fs)| fs.starts_with("fuse") && *src == s)
        .map(|(_, mp, _)| mp)
}

pub fn is_mountpoint(path: &Path) -> bool {
    mounts()
        .into_iter()
        .any(|(_, mp, _)| Path::new(&mp) == path)
}

/// (source, mountpoint, fstype) of every mount, from /proc/self/mountinfo.
fn mounts() -> Vec<(String, String, String)> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mp = unescape(left.split(' ').nth(4)?);
            let mut r = right.split(' ');
            let fstype = r.next()?.to_string();
            let src = unescape(r.next()?);
            Some((src, mp, fstype))
        })
        .collect()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
