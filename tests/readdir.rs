//! A directory listing ends and returns each entry at most once, whatever
//! is renamed, created or deleted in the directory while it runs: a batch
//! renamer or a scanner that marks what it has seen renames each entry as
//! it reads it (btrfs once listed such renames again and again).

mod common;

use std::collections::HashMap;
use std::fs;

use common::Vault;

const FILES: usize = 5000;

fn name(i: usize) -> String {
    format!("f{i:05}")
}

/// Entries read before the listing is given up as endless.
const GIVE_UP: usize = 3 * FILES;

#[test]
fn renaming_each_entry_as_it_is_listed_ends_and_lists_it_once() {
    let v = Vault::mounted();
    let dir = v.path("scans");
    fs::create_dir(&dir).unwrap();
    for i in 0..FILES {
        fs::write(dir.join(name(i)), b"x").unwrap();
    }

    // Every even entry is renamed (to a name no other entry has) as soon
    // as it is read; every odd one stays in the directory throughout.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut read = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let entry = entry.unwrap();
        let n = entry.file_name().into_string().unwrap();
        *seen.entry(n.clone()).or_default() += 1;
        read += 1;
        assert!(
            read <= GIVE_UP,
            "the listing did not end: {read} entries read from a directory of {FILES}"
        );
        if let Some(i) = n.strip_prefix('f').and_then(|i| i.parse::<usize>().ok()) {
            if i.is_multiple_of(2) {
                fs::rename(entry.path(), dir.join(format!("done-{n}"))).unwrap();
            }
        } else {
            // A renamed entry met again under its new name: rename it once
            // more, as a renamer that marks what it sees would.
            fs::rename(entry.path(), dir.join(format!("again-{n}"))).unwrap();
        }
    }

    for i in 0..FILES {
        let n = name(i);
        let times = seen.get(&n).copied().unwrap_or(0);
        if i % 2 == 1 {
            assert_eq!(
                times, 1,
                "{n} stayed in the directory but was listed {times} times"
            );
        } else {
            assert!(times <= 1, "{n} was listed {times} times");
        }
    }
    let repeated: Vec<_> = seen.iter().filter(|(_, &c)| c > 1).collect();
    assert!(repeated.is_empty(), "listed more than once: {repeated:?}");
    assert_eq!(fs::read_dir(&dir).unwrap().count(), FILES, "no entry lost");
}

#[test]
fn a_listing_with_creates_and_deletes_meanwhile_ends_and_keeps_the_rest_once() {
    let v = Vault::mounted();
    let dir = v.path("busy");
    fs::create_dir(&dir).unwrap();
    for i in 0..FILES {
        fs::write(dir.join(name(i)), b"x").unwrap();
    }

    // Each entry read adds a new file and deletes one not yet read, so the
    // directory never shrinks and always has entries ahead of the listing.
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut created = 0;
    for entry in fs::read_dir(&dir).unwrap() {
        let n = entry.unwrap().file_name().into_string().unwrap();
        *seen.entry(n).or_default() += 1;
        assert!(
            seen.values().sum::<usize>() <= GIVE_UP,
            "the listing did not end"
        );
        fs::write(dir.join(format!("new{created:05}")), b"y").unwrap();
        created += 1;
        let doomed = FILES - created;
        if doomed.is_multiple_of(3) && doomed > created {
            let _ = fs::remove_file(dir.join(name(doomed)));
        }
    }
    for i in (0..FILES).filter(|i| !i.is_multiple_of(3)) {
        assert_eq!(seen.get(&name(i)), Some(&1), "{} listed wrong", name(i));
    }
    assert!(seen.values().all(|&c| c == 1), "an entry was listed twice");
}

#[test]
fn rewinddir_sees_what_was_created_after_the_directory_was_opened() {
    let v = Vault::mounted();
    let dir = v.path("rewound");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("before"), b"x").unwrap();
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: a valid C string; the stream is closed below.
    let d = unsafe { libc::opendir(c.as_ptr()) };
    assert!(!d.is_null());
    let names = |d: *mut libc::DIR| {
        let mut out = Vec::new();
        loop {
            // SAFETY: `d` is an open directory stream.
            let e = unsafe { libc::readdir(d) };
            if e.is_null() {
                return out;
            }
            // SAFETY: d_name is a NUL-terminated name inside the entry.
            let n = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) };
            out.push(n.to_string_lossy().into_owned());
        }
    };
    assert!(names(d).contains(&"before".to_string()));
    fs::write(dir.join("after"), b"y").unwrap();
    // SAFETY: `d` is still open.
    unsafe { libc::rewinddir(d) };
    let again = names(d);
    // SAFETY: closes the stream opened above.
    unsafe { libc::closedir(d) };
    assert!(
        again.contains(&"after".to_string()),
        "rewinddir did not show an entry created since opendir: {again:?}"
    );
}
