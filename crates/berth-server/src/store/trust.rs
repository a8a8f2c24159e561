//! Whether the metadata store can be trusted at start-up: a damaged
//! `berth.db-wal`, or a database older than what the data directory proves
//! existed, stops the server with what is inconsistent and how to recover,
//! instead of serving an empty or rolled-back workspace.
//!
//! The evidence kept outside the database is `<data>/store-watermark`: the
//! newest workspace event id known to be committed (every registration and
//! service change writes events), updated after each event batch commits.
//! Revision lay-outs (`services/<name>/r<N>/`) are evidence too: a revision
//! laid out must exist in the database.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, OpenFlags, OptionalExtension};

/// File name of the watermark, in the data directory.
pub const WATERMARK_FILE: &str = "store-watermark";

/// Why the store is not trusted (each names the inconsistency).
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// The write-ahead log is not a SQLite WAL.
    #[error("`{path}` is damaged: {detail}")]
    DamagedWal {
        /// The WAL file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// The database fails SQLite's own check.
    #[error("`{path}` is damaged: PRAGMA quick_check says {detail}")]
    DamagedDatabase {
        /// The database.
        path: PathBuf,
        /// SQLite's finding.
        detail: String,
    },
    /// The database lacks what the data directory proves was committed.
    #[error("`{path}` is older than the data directory: {detail}")]
    Older {
        /// The database.
        path: PathBuf,
        /// What it lacks.
        detail: String,
    },
    /// The check itself could not run.
    #[error("cannot check `{path}`: {detail}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        detail: String,
    },
}

impl TrustError {
    /// What the operator can do, naming the commands.
    pub fn recovery(data: &Path) -> String {
        format!(
            "Nothing was served. Restore the newest backup with `berth admin restore --data {d} BACKUP_FILE`; or, to serve this database as it is (what it lacks is lost), run `berth admin accept-store --data {d}`, then `berth admin verify --data {d}`.",
            d = data.display()
        )
    }
}

/// The WAL magic numbers (little- and big-endian checksums).
const WAL_MAGIC: [u32; 2] = [0x377f_0682, 0x377f_0683];
const WAL_HEADER: usize = 32;

/// Checks the WAL header before SQLite opens (and would reset) it.
pub fn check_wal(db: &Path) -> Result<(), TrustError> {
    let path = PathBuf::from(format!("{}-wal", db.display()));
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(TrustError::Unreadable {
                path,
                detail: e.to_string(),
            });
        }
    };
    if bytes.is_empty() {
        return Ok(());
    }
    wal_header_problem(&bytes).map_or(Ok(()), |detail| {
        Err(TrustError::DamagedWal { path, detail })
    })
}

/// What is wrong with a WAL's header, if anything (pure).
pub fn wal_header_problem(bytes: &[u8]) -> Option<String> {
    if bytes.len() < WAL_HEADER {
        return Some(format!(
            "it is {} bytes, shorter than a WAL header ({WAL_HEADER})",
            bytes.len()
        ));
    }
    let word = |i: usize| u32::from_be_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
    let magic = word(0);
    if !WAL_MAGIC.contains(&magic) {
        return Some(format!(
            "its header starts with {magic:#010x}, not a SQLite WAL magic number"
        ));
    }
    let big_endian = magic & 1 == 1;
    let header_sum = wal_checksum(&bytes[..24], big_endian, (0, 0));
    if header_sum != (word(24), word(28)) {
        return Some("its header checksum does not match".into());
    }
    frames_problem(bytes, big_endian, header_sum)
}

/// SQLite's WAL checksum over `data` (8-byte steps), seeded with `seed`.
fn wal_checksum(data: &[u8], big_endian: bool, seed: (u32, u32)) -> (u32, u32) {
    let (mut s0, mut s1) = seed;
    for pair in data.chunks_exact(8) {
        let read = |b: &[u8]| {
            let a = [b[0], b[1], b[2], b[3]];
            if big_endian {
                u32::from_be_bytes(a)
            } else {
                u32::from_le_bytes(a)
            }
        };
        s0 = s0.wrapping_add(read(&pair[..4])).wrapping_add(s1);
        s1 = s1.wrapping_add(read(&pair[4..])).wrapping_add(s0);
    }
    (s0, s1)
}

/// A frame whose checksum fails while two or more committed transactions of
/// the same log follow it: SQLite would silently drop acknowledged commits.
/// (One commit after a bad frame is a torn last transaction, which was never
/// acknowledged and is rightly dropped.)
fn frames_problem(bytes: &[u8], big_endian: bool, header_sum: (u32, u32)) -> Option<String> {
    let be = |b: &[u8], i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let page_size = match be(bytes, 8) {
        1 => 65_536,
        n => n as usize,
    };
    if !(512..=65_536).contains(&page_size) || !page_size.is_power_of_two() {
        return Some(format!("its header gives a page size of {page_size}"));
    }
    let salts = (be(bytes, 16), be(bytes, 20));
    let mut sum = header_sum;
    let mut first_bad = None;
    let mut commits_after = 0u32;
    for (index, frame) in bytes[WAL_HEADER..].chunks_exact(24 + page_size).enumerate() {
        if (be(frame, 8), be(frame, 12)) != salts {
            if first_bad.is_none() {
                break;
            }
            continue;
        }
        if first_bad.is_some() {
            if be(frame, 4) != 0 {
                commits_after += 1;
            }
            continue;
        }
        let next = wal_checksum(
            &frame[24..],
            big_endian,
            wal_checksum(&frame[..8], big_endian, sum),
        );
        if next == (be(frame, 16), be(frame, 20)) {
            sum = next;
        } else {
            first_bad = Some(index);
        }
    }
    match first_bad {
        Some(index) if commits_after >= 2 => Some(format!(
            "frame {index} fails its checksum and {commits_after} committed transactions follow it"
        )),
        _ => None,
    }
}

/// The newest event id the database holds (ever assigned).
fn newest_event(conn: &Connection) -> rusqlite::Result<u64> {
    let seq: Option<i64> = conn
        .query_row(
            "SELECT seq FROM sqlite_sequence WHERE name = 'events'",
            [],
            |r| r.get(0),
        )
        .optional()?;
    let max: Option<i64> = conn.query_row("SELECT max(id) FROM events", [], |r| r.get(0))?;
    Ok(seq.unwrap_or(0).max(max.unwrap_or(0)).max(0) as u64)
}

/// Reads the watermark; `None` when there is none (a first start).
pub fn read_watermark(data: &Path) -> Option<u64> {
    std::fs::read_to_string(data.join(WATERMARK_FILE))
        .ok()
        .and_then(|text| text.trim().parse().ok())
}

fn write_watermark(data: &Path, newest: u64) -> std::io::Result<()> {
    let path = data.join(WATERMARK_FILE);
    let tmp = data.join(format!("{WATERMARK_FILE}.tmp"));
    std::fs::write(&tmp, format!("{newest}\n"))?;
    std::fs::rename(&tmp, &path)
}

/// Checks the opened (migrated) database against the data directory's
/// evidence; on success the watermark is brought up to the database.
pub fn check(data: &Path, db: &Path) -> Result<(), TrustError> {
    let unreadable = |e: rusqlite::Error| TrustError::Unreadable {
        path: db.to_owned(),
        detail: e.to_string(),
    };
    let conn =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(unreadable)?;
    let verdict: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(unreadable)?;
    if verdict != "ok" {
        return Err(TrustError::DamagedDatabase {
            path: db.to_owned(),
            detail: verdict,
        });
    }
    let newest = newest_event(&conn).map_err(unreadable)?;
    let mut problems = Vec::new();
    if let Some(mark) = read_watermark(data)
        && mark > newest
    {
        problems.push(format!(
            "workspace events up to #{mark} were committed, the database's newest is #{newest} (`{}`; a lost or damaged `berth.db-wal`, or an older `berth.db` put back)",
            data.join(WATERMARK_FILE).display()
        ));
    }
    problems.extend(revision_problems(data, &conn).map_err(unreadable)?);
    if !problems.is_empty() {
        return Err(TrustError::Older {
            path: db.to_owned(),
            detail: problems.join("; "),
        });
    }
    write_watermark(data, newest).map_err(|e| TrustError::Unreadable {
        path: data.join(WATERMARK_FILE),
        detail: e.to_string(),
    })
}

/// Revision lay-outs newer than the database's newest revision of their service.
fn revision_problems(data: &Path, conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut problems = Vec::new();
    let Ok(services) = std::fs::read_dir(data.join("services")) else {
        return Ok(problems);
    };
    let mut latest = conn.prepare("SELECT latest_revision FROM services WHERE name = ?1")?;
    for service in services.flatten() {
        let name = service.file_name().to_string_lossy().into_owned();
        let Ok(revisions) = std::fs::read_dir(service.path()) else {
            continue;
        };
        let laid_out = revisions
            .flatten()
            .filter(|r| r.path().join(".complete").exists())
            .filter_map(|r| {
                r.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix('r'))
                    .and_then(|n| n.parse::<u32>().ok())
            })
            .max();
        let Some(laid_out) = laid_out else { continue };
        let known: Option<u32> = latest.query_row([&name], |r| r.get(0)).optional()?;
        match known {
            Some(known) if known >= laid_out => {}
            Some(known) => problems.push(format!(
                "service `{name}` has revision {laid_out} laid out in `{}`, the database knows revisions up to {known}",
                service.path().display()
            )),
            None => tracing::warn!(service = %name, path = %service.path().display(), "a lay-out of a service the database does not know; it is left alone"),
        }
    }
    Ok(problems)
}

/// Accepts the database as it is: the watermark is set to its newest event.
pub fn accept(data: &Path, db: &Path) -> Result<u64, TrustError> {
    let unreadable = |e: rusqlite::Error| TrustError::Unreadable {
        path: db.to_owned(),
        detail: e.to_string(),
    };
    let conn =
        Connection::open_with_flags(db, OpenFlags::SQLITE_OPEN_READ_ONLY).map_err(unreadable)?;
    let newest = newest_event(&conn).map_err(unreadable)?;
    write_watermark(data, newest).map_err(|e| TrustError::Unreadable {
        path: data.join(WATERMARK_FILE),
        detail: e.to_string(),
    })?;
    Ok(newest)
}

/// Keeps the watermark up with the events committed while serving.
#[derive(Debug)]
pub struct Watermark {
    data: PathBuf,
    written: AtomicU64,
}

impl Watermark {
    /// The watermark of `data`, as last written.
    pub fn new(data: &Path) -> Self {
        Self {
            data: data.to_owned(),
            written: AtomicU64::new(read_watermark(data).unwrap_or(0)),
        }
    }

    /// Records that events up to `newest` are committed.
    pub fn record(&self, newest: u64) {
        if self.written.fetch_max(newest, Ordering::AcqRel) >= newest {
            return;
        }
        if let Err(e) = write_watermark(&self.data, newest) {
            tracing::warn!(error = %e, "cannot update the store watermark");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u32) -> Vec<u8> {
        let mut h = Vec::new();
        for word in [magic, 3_007_000, 4096, 0, 11, 22] {
            h.extend_from_slice(&word.to_be_bytes());
        }
        let (mut s0, mut s1) = (0u32, 0u32);
        for pair in h.chunks(8) {
            let read = |b: &[u8]| {
                let a = [b[0], b[1], b[2], b[3]];
                if magic & 1 == 1 {
                    u32::from_be_bytes(a)
                } else {
                    u32::from_le_bytes(a)
                }
            };
            s0 = s0.wrapping_add(read(&pair[..4])).wrapping_add(s1);
            s1 = s1.wrapping_add(read(&pair[4..])).wrapping_add(s0);
        }
        h.extend_from_slice(&s0.to_be_bytes());
        h.extend_from_slice(&s1.to_be_bytes());
        h
    }

    #[test]
    fn wal_headers_are_checked() {
        for magic in WAL_MAGIC {
            assert_eq!(wal_header_problem(&header(magic)), None);
        }
        assert!(wal_header_problem(b"short").unwrap().contains("shorter"));
        let mut bad = header(WAL_MAGIC[1]);
        bad[0] = 0;
        assert!(wal_header_problem(&bad).unwrap().contains("magic"));
        let mut flipped = header(WAL_MAGIC[0]);
        flipped[10] ^= 1;
        assert!(wal_header_problem(&flipped).unwrap().contains("checksum"));
    }

    #[test]
    fn a_real_wal_passes_and_a_damaged_one_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x); INSERT INTO t VALUES (1);",
        )
        .unwrap();
        let wal = std::fs::read(dir.path().join("t.db-wal")).unwrap();
        assert_eq!(wal_header_problem(&wal), None);
        let mut damaged = wal.clone();
        damaged[5] ^= 0xff;
        assert!(wal_header_problem(&damaged).is_some());
    }

    #[test]
    fn a_damaged_frame_followed_by_commits_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("t.db");
        let conn = Connection::open(&db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0; CREATE TABLE t(x);",
        )
        .unwrap();
        for i in 0..5 {
            conn.execute("INSERT INTO t VALUES (?1)", [i]).unwrap();
        }
        let wal = std::fs::read(dir.path().join("t.db-wal")).unwrap();
        assert_eq!(wal_header_problem(&wal), None);
        let page = u32::from_be_bytes([wal[8], wal[9], wal[10], wal[11]]) as usize;
        // A byte of the first frame's page flipped: every later commit would be lost.
        let mut damaged = wal.clone();
        damaged[WAL_HEADER + 24 + 100] ^= 0x01;
        let problem = wal_header_problem(&damaged).unwrap();
        assert!(problem.contains("frame 0 fails its checksum"), "{problem}");
        // The last frame torn (a transaction never acknowledged): not damage.
        let mut torn = wal.clone();
        let last = torn.len() - page / 2;
        torn[last] ^= 0x01;
        assert_eq!(wal_header_problem(&torn), None);
    }
}
