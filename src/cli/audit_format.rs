//! How `phivault audit` prints records: a table for people, JSON and CSV
//! for scripts, JSON lines for `--follow` and `export`. Formatting only; it
//! never opens a store.

use serde_json::{json, Map, Value};

use super::time_spec::format_rfc3339;
use super::util::{timestamp, Names};
use crate::audit::{Detail, Record};

/// How `audit` prints the records it finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// For people (also spelled `text`).
    #[value(alias = "text")]
    Table,
    /// One JSON array (JSON lines with --follow).
    Json,
    /// Comma-separated values with a header line.
    Csv,
}

/// The columns of the table and of CSV.
pub const COLUMNS: [&str; 8] = [
    "time", "user", "login", "process", "op", "path", "detail", "result",
];

/// One record as the table's and CSV's cells.
pub fn cells(r: &Record, names: &mut Names, tz: &jiff::tz::TimeZone) -> [String; 8] {
    let time = timestamp(r.time_ns)
        .to_zoned_datetime(tz.clone())
        .strftime("%Y-%m-%d %H:%M:%S%.3f %Z")
        .to_string();
    let login = match r.who.login_uid {
        None => "-".to_string(),
        Some(u) => names.user(u).unwrap_or_else(|| u.to_string()),
    };
    let process = if r.who.comm.is_empty() {
        r.who.pid.to_string()
    } else {
        format!("{} {}", r.who.pid, r.who.comm)
    };
    [
        time,
        names.user_label(Some(r.who.uid)),
        login,
        process,
        r.op.name().to_string(),
        path_cell(r),
        detail_text(&r.detail),
        result_name(r.result),
    ]
}

fn path_cell(r: &Record) -> String {
    let path = String::from_utf8_lossy(&r.path);
    match &r.target {
        Some(t) => format!("{path} -> {}", String::from_utf8_lossy(t)),
        None => path.into_owned(),
    }
}

/// Rows under a header, columns as wide as their widest cell; the last
/// column is not padded.
pub fn table(rows: &[[String; 8]]) -> String {
    let mut w = COLUMNS.map(str::len);
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let header = COLUMNS.map(String::from);
    for r in std::iter::once(&header).chain(rows) {
        out.push_str(&table_line(r, &w));
    }
    out
}

/// One line of a table with these column widths.
pub fn table_line(r: &[String; 8], w: &[usize; 8]) -> String {
    let mut line = String::new();
    for (i, c) in r.iter().enumerate() {
        if i + 1 == r.len() {
            line.push_str(c);
        } else {
            line.push_str(c);
            let pad = w[i].saturating_sub(c.chars().count()) + 2;
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    line.push('\n');
    line
}

/// One CSV line (RFC 4180: fields with a comma, quote or line break are
/// quoted, quotes doubled).
pub fn csv_line(cells: &[String]) -> String {
    let mut line = cells
        .iter()
        .map(|c| {
            if c.contains([',', '"', '\n', '\r']) {
                format!("\"{}\"", c.replace('"', "\"\""))
            } else {
                c.clone()
            }
        })
        .collect::<Vec<_>>()
        .join(",");
    line.push_str("\r\n");
    line
}

/// A record with every field, for JSON output and `export`. Paths that are
/// not UTF-8 are given lossily in `path` and exactly in `path_hex`.
pub fn record_json(r: &Record, names: &mut Names) -> Value {
    let mut o = Map::new();
    o.insert("seq".into(), r.seq.into());
    o.insert("time".into(), format_rfc3339(timestamp(r.time_ns)).into());
    o.insert("time_ns".into(), r.time_ns.into());
    let w = &r.who;
    o.insert(
        "who".into(),
        json!({
            "uid": w.uid,
            "user": names.user(w.uid),
            "gid": w.gid,
            "group": names.group(w.gid),
            "pid": w.pid,
            "comm": w.comm,
            "exe": w.exe,
            "login_uid": w.login_uid,
            "login_user": w.login_uid.and_then(|u| names.user(u)),
            "session_id": w.session_id,
        }),
    );
    o.insert("op".into(), r.op.name().into());
    put_bytes(&mut o, "path", &r.path);
    match &r.target {
        Some(t) => put_bytes(&mut o, "target", t),
        None => {
            o.insert("target".into(), Value::Null);
        }
    }
    o.insert("ino".into(), r.ino.into());
    o.insert("parent".into(), r.parent.into());
    o.insert("detail".into(), detail_json(&r.detail));
    o.insert("result".into(), result_name(r.result).into());
    o.insert("errno".into(), r.result.into());
    Value::Object(o)
}

fn put_bytes(o: &mut Map<String, Value>, key: &str, b: &[u8]) {
    o.insert(key.into(), String::from_utf8_lossy(b).into());
    if std::str::from_utf8(b).is_err() {
        o.insert(format!("{key}_hex"), hex::encode(b).into());
    }
}

fn detail_json(d: &Detail) -> Value {
    let mut o = Map::new();
    if let Some(f) = d.flags {
        o.insert("flags".into(), f.into());
        o.insert("flag_names".into(), open_flags(f).into());
    }
    if let Some(m) = d.mode {
        o.insert("mode".into(), m.into());
        o.insert("mode_octal".into(), format!("{:04o}", m & 0o7777).into());
    }
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            o.insert(k.into(), v);
        }
    };
    put("uid", d.uid.map(Into::into));
    put("gid", d.gid.map(Into::into));
    put("size", d.size.map(Into::into));
    put("atime_ns", d.atime.map(Into::into));
    put("mtime_ns", d.mtime.map(Into::into));
    put("written", d.written.map(Into::into));
    if let Some(x) = &d.xattr {
        put_bytes(&mut o, "xattr", x);
    }
    Value::Object(o)
}

/// The detail in words: `flags=O_RDWR|O_CREAT mode=0644 written=12`.
pub fn detail_text(d: &Detail) -> String {
    let mut parts = Vec::new();
    if let Some(f) = d.flags {
        parts.push(format!("flags={}", open_flags(f)));
    }
    if let Some(m) = d.mode {
        parts.push(format!("mode={:04o}", m & 0o7777));
    }
    if let Some(u) = d.uid {
        parts.push(format!("uid={u}"));
    }
    if let Some(g) = d.gid {
        parts.push(format!("gid={g}"));
    }
    if let Some(s) = d.size {
        parts.push(format!("size={s}"));
    }
    if let Some(t) = d.atime {
        parts.push(format!("atime={}", format_rfc3339(timestamp(t))));
    }
    if let Some(t) = d.mtime {
        parts.push(format!("mtime={}", format_rfc3339(timestamp(t))));
    }
    if let Some(x) = &d.xattr {
        parts.push(format!("xattr={}", String::from_utf8_lossy(x)));
    }
    if let Some(w) = d.written {
        parts.push(format!("written={w}"));
    }
    parts.join(" ")
}

/// open(2) flags by name: the access mode, then the other bits set.
pub fn open_flags(f: i32) -> String {
    let mut names = vec![match f & libc::O_ACCMODE {
        libc::O_RDONLY => "O_RDONLY",
        libc::O_WRONLY => "O_WRONLY",
        _ => "O_RDWR",
    }
    .to_string()];
    const BITS: [(i32, &str); 15] = [
        (libc::O_CREAT, "O_CREAT"),
        (libc::O_EXCL, "O_EXCL"),
        (libc::O_NOCTTY, "O_NOCTTY"),
        (libc::O_TRUNC, "O_TRUNC"),
        (libc::O_APPEND, "O_APPEND"),
        (libc::O_NONBLOCK, "O_NONBLOCK"),
        (libc::O_SYNC, "O_SYNC"),
        (libc::O_DSYNC, "O_DSYNC"),
        (libc::O_DIRECT, "O_DIRECT"),
        (libc::O_DIRECTORY, "O_DIRECTORY"),
        (libc::O_NOFOLLOW, "O_NOFOLLOW"),
        (libc::O_NOATIME, "O_NOATIME"),
        (libc::O_CLOEXEC, "O_CLOEXEC"),
        (libc::O_PATH, "O_PATH"),
        // The kernel sets it on every open of a 64-bit process; libc's
        // constant is 0 there.
        (0o100000, "O_LARGEFILE"),
    ];
    let mut rest = f & !libc::O_ACCMODE;
    for (bit, name) in BITS {
        // O_SYNC includes O_DSYNC's bit: name the wider one only.
        if rest & bit == bit && bit != 0 {
            names.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push(format!("{rest:#o}"));
    }
    names.join("|")
}

/// "ok", or the errno's name (EACCES), or "errno N" for one without a name here.
pub fn result_name(errno: i32) -> String {
    if errno == 0 {
        return "ok".into();
    }
    const NAMES: [(i32, &str); 36] = [
        (libc::EPERM, "EPERM"),
        (libc::ENOENT, "ENOENT"),
        (libc::ESRCH, "ESRCH"),
        (libc::EINTR, "EINTR"),
        (libc::EIO, "EIO"),
        (libc::ENXIO, "ENXIO"),
        (libc::E2BIG, "E2BIG"),
        (libc::EBADF, "EBADF"),
        (libc::EAGAIN, "EAGAIN"),
        (libc::ENOMEM, "ENOMEM"),
        (libc::EACCES, "EACCES"),
        (libc::EFAULT, "EFAULT"),
        (libc::EBUSY, "EBUSY"),
        (libc::EEXIST, "EEXIST"),
        (libc::EXDEV, "EXDEV"),
        (libc::ENODEV, "ENODEV"),
        (libc::ENOTDIR, "ENOTDIR"),
        (libc::EISDIR, "EISDIR"),
        (libc::EINVAL, "EINVAL"),
        (libc::ENFILE, "ENFILE"),
        (libc::EMFILE, "EMFILE"),
        (libc::ETXTBSY, "ETXTBSY"),
        (libc::EFBIG, "EFBIG"),
        (libc::ENOSPC, "ENOSPC"),
        (libc::EROFS, "EROFS"),
        (libc::EMLINK, "EMLINK"),
        (libc::ERANGE, "ERANGE"),
        (libc::ENAMETOOLONG, "ENAMETOOLONG"),
        (libc::ENOSYS, "ENOSYS"),
        (libc::ENOTEMPTY, "ENOTEMPTY"),
        (libc::ELOOP, "ELOOP"),
        (libc::ENODATA, "ENODATA"),
        (libc::EOPNOTSUPP, "EOPNOTSUPP"),
        (libc::EDQUOT, "EDQUOT"),
        (libc::ESTALE, "ESTALE"),
        (libc::EOVERFLOW, "EOVERFLOW"),
    ];
    NAMES
        .iter()
        .find(|(n, _)| *n == errno)
        .map(|(_, name)| name.to_string())
        .unwrap_or_else(|| format!("errno {errno}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_and_errnos_are_named() {
        assert_eq!(
            open_flags(libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC),
            "O_RDWR|O_CREAT|O_TRUNC"
        );
        assert_eq!(open_flags(libc::O_RDONLY), "O_RDONLY");
        assert_eq!(result_name(0), "ok");
        assert_eq!(result_name(libc::EACCES), "EACCES");
        assert_eq!(result_name(9999), "errno 9999");
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let cells = ["a".to_string(), "b,c".into(), "say \"hi\"".into()];
        assert_eq!(csv_line(&cells), "a,\"b,c\",\"say \"\"hi\"\"\"\r\n");
    }
}
