//! A log file that survives what happens to it: rotation by size and/or age with a retention count,
//! reopening when logrotate moves it (SIGHUP) or someone deletes it, and a full disk or a removed folder
//! that costs events (counted) but never blocks the writer.
//!
//! Durability: each batch of whole lines goes out in one `write()` on an `O_APPEND` file; if the write fails
//! half-way (disk full) the file is cut back to its last whole line. A crash of c2sink loses nothing already
//! written; data is `fdatasync`ed at most once a second while lines arrive, before each rotation and at
//! exit, so a power loss can cost the last second.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

/// When to start a new file, and how many old ones to keep.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    pub max_size: Option<u64>,
    pub max_age: Option<Duration>,
    pub keep: usize,
    pub gzip: bool,
}

/// One append-only log file.
pub struct LogFile {
    path: PathBuf,
    rotation: Rotation,
    file: Option<File>,
    inode: u64,
    size: u64,
    opened: SystemTime,
    dirty: bool,
    last_sync: Instant,
    /// When the path was last looked up to see whether it still leads to our file.
    path_checked: Instant,
    /// Background gzip jobs, waited for on drop so that no half-compressed file is left at exit.
    tidying: Vec<std::thread::JoinHandle<()>>,
    /// Stamp and number of the last rotated name, so that a second's numbers only go up.
    last_rotated: Option<(String, u64)>,
    /// Since a rotation failed (a folder the `[server] user` cannot write, say), when to try again: until
    /// then lines are appended without another try, which would cost an `fdatasync`, a folder listing and a
    /// warning for every batch.
    rotate_retry_at: Option<Instant>,
}

const SYNC_EVERY: Duration = Duration::from_secs(1);
/// How long after a failed rotation the next is tried.
const ROTATE_RETRY: Duration = Duration::from_secs(60);
/// How often the path is checked for a file moved away without a SIGHUP.
const PATH_CHECK_EVERY: Duration = Duration::from_secs(1);

impl LogFile {
    /// Opens (creating) the file for appending; fails if it cannot be opened now.
    pub fn open(path: &Path, rotation: Rotation) -> std::io::Result<LogFile> {
        let mut f = LogFile {
            path: path.to_path_buf(),
            rotation,
            file: None,
            inode: 0,
            size: 0,
            opened: SystemTime::now(),
            dirty: false,
            last_sync: Instant::now(),
            path_checked: Instant::now(),
            tidying: Vec::new(),
            last_rotated: None,
            rotate_retry_at: None,
        };
        remove_unfinished_compressions(path);
        f.ensure_open()?;
        Ok(f)
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes the file so that the next write opens the path again (after logrotate moved it).
    pub fn reopen(&mut self) {
        self.sync();
        self.file = None;
    }

    /// Appends whole lines; with `rotate_size`, in pieces that each fit the file they go to (rotating in
    /// between), so a file passes that size only by a single line longer than it. On failure nothing
    /// partial is left behind.
    pub fn write_lines(&mut self, batch: &[u8]) -> std::io::Result<()> {
        let Some(max) = self.rotation.max_size else {
            return self.write_piece(batch);
        };
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        let mut rest = batch;
        while !rest.is_empty() {
            let room = max.saturating_sub(usize::try_from(self.size).unwrap_or(usize::MAX));
            let mut cut = lines_within(rest, room);
            if cut > room && self.size > 0 {
                // Not one line fits what is left of this file: the piece starts the next one, so fill that.
                cut = lines_within(rest, max);
            }
            let (piece, tail) = rest.split_at(cut);
            self.write_piece(piece)?;
            rest = tail;
        }
        Ok(())
    }

    /// Appends whole lines in one write, rotating first if they would take the file past `rotate_size`.
    fn write_piece(&mut self, batch: &[u8]) -> std::io::Result<()> {
        self.follow_file();
        if self.file.is_some() && self.due(batch.len() as u64) {
            self.try_rotate();
        }
        self.ensure_open()?;
        let Some(file) = self.file.as_mut() else {
            return Err(std::io::Error::other("log file not open"));
        };
        if self.size == 0 {
            // A file's age counts from its first line, not from a quiet hour before it.
            self.opened = SystemTime::now();
        }
        if let Err(e) = file.write_all(batch) {
            // Cut a partial write back to the last whole line (fails harmlessly on devices).
            let _ = file.set_len(self.size);
            return Err(e);
        }
        self.size += batch.len() as u64;
        self.dirty = true;
        Ok(())
    }

    /// Called about once a second: syncs recent lines and rotates an idle file that is old enough.
    pub fn tick(&mut self) {
        if self.path_checked.elapsed() >= PATH_CHECK_EVERY {
            self.follow_path();
        }
        if self.dirty && self.last_sync.elapsed() >= SYNC_EVERY {
            self.sync();
        }
        if self.file.is_some() && self.size > 0 && self.due(0) {
            self.try_rotate();
        }
    }

    /// Rotates a file that is due, unless a rotation failed lately: one warning per failure, then one try a
    /// minute (each batch in between is appended to the file as it is), and a line when rotating works again.
    fn try_rotate(&mut self) {
        if self.rotate_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        match self.rotate() {
            Ok(()) if self.rotate_retry_at.take().is_some() => {
                tracing::info!(path = %self.path.display(), "log rotates again");
            }
            Ok(()) => {}
            Err(e) => {
                if self.rotate_retry_at.is_none() {
                    tracing::warn!(
                        path = %self.path.display(),
                        error = %e,
                        retry_s = ROTATE_RETRY.as_secs(),
                        "cannot rotate log; still appending to it, next try in a minute"
                    );
                }
                self.rotate_retry_at = Some(Instant::now() + ROTATE_RETRY);
            }
        }
    }

    /// Flushes written lines to the disk.
    pub fn sync(&mut self) {
        if let Some(f) = &self.file
            && self.dirty
        {
            let _ = f.sync_data();
        }
        self.dirty = false;
        self.last_sync = Instant::now();
    }

    fn due(&self, incoming: u64) -> bool {
        let by_size = self
            .rotation
            .max_size
            .is_some_and(|max| self.size > 0 && self.size + incoming > max);
        // An empty file is never rotated by age: it would hold nothing and use up one of the `keep` files.
        let by_age = self.size > 0
            && self
                .rotation
                .max_age
                .is_some_and(|age| self.opened.elapsed().is_ok_and(|e| e >= age));
        by_size || by_age
    }

    /// Before each write: drops the handle of a deleted file (or one in a removed folder), and takes the
    /// file's real length (someone may have truncated it: logrotate's copytruncate). An `fstat`, not a path
    /// lookup: walking the path before every batch was a sixth of the writer's CPU under load
    /// (docs/performance.md).
    fn follow_file(&mut self) {
        let Some(f) = &self.file else {
            return;
        };
        match f.metadata() {
            Ok(m) if m.nlink() > 0 => self.size = m.len(),
            _ => self.file = None,
        }
    }

    /// Drops the handle when the path no longer leads to our file (moved away without a SIGHUP). Lines
    /// written in between are in the moved file, not lost.
    fn follow_path(&mut self) {
        self.path_checked = Instant::now();
        if self.file.is_none() {
            return;
        }
        match std::fs::metadata(&self.path) {
            Ok(m) if m.ino() == self.inode => {}
            _ => self.file = None,
        }
    }

    fn ensure_open(&mut self) -> std::io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        let m = f.metadata()?;
        self.inode = m.ino();
        self.size = m.len();
        // A file we did not create keeps its age from its creation (or last change) time.
        self.opened = m
            .created()
            .or_else(|_| m.modified())
            .unwrap_or_else(|_| SystemTime::now())
            .min(SystemTime::now());
        if self.size == 0 {
            self.opened = SystemTime::now();
        }
        self.file = Some(f);
        Ok(())
    }

    /// Moves the current file aside as `NAME.YYYY-MM-DDTHHMMSSZ`, opens a fresh one, and prunes old ones.
    fn rotate(&mut self) -> std::io::Result<()> {
        self.sync();
        let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
            .to_string()
            .replace(':', "");
        // After the newest file of this second: the first free number could be one retention just freed,
        // whose name sorts oldest, so the newest file would be the next one pruned.
        let mut n = rotated_files(&self.path)
            .iter()
            .filter_map(|p| rotated_key(&self.path, p))
            .filter(|(s, _)| *s == stamp)
            .map(|(_, n)| n + 1)
            .max()
            .unwrap_or(0);
        if let Some((s, last)) = &self.last_rotated
            && *s == stamp
        {
            n = n.max(last + 1);
        }
        let mut target = rotated_name(&self.path, &stamp, n);
        while target.exists() || gz(&target).exists() {
            n += 1;
            target = rotated_name(&self.path, &stamp, n);
        }
        std::fs::rename(&self.path, &target)?;
        self.last_rotated = Some((stamp, n));
        self.file = None;
        self.ensure_open()?;
        self.opened = SystemTime::now();
        tracing::info!(path = %self.path.display(), rotated = %target.display(), "log rotated");
        let (path, keep, gzip) = (self.path.clone(), self.rotation.keep, self.rotation.gzip);
        let tidy = move || {
            if gzip && let Err(e) = compress(&target) {
                tracing::warn!(path = %target.display(), error = %e, "cannot gzip rotated log");
            }
            prune(&path, keep);
        };
        if gzip {
            // Compressing a big file takes seconds: keep it away from the writer.
            self.tidying.retain(|h| !h.is_finished());
            match std::thread::Builder::new()
                .name("c2sink-gzip".into())
                .spawn(tidy)
            {
                Ok(h) => self.tidying.push(h),
                Err(_) => {
                    tracing::warn!("cannot start the gzip thread; rotated log left uncompressed")
                }
            }
        } else {
            tidy();
        }
        Ok(())
    }
}

impl Drop for LogFile {
    fn drop(&mut self) {
        self.sync();
        for h in self.tidying.drain(..) {
            let _ = h.join();
        }
    }
}

/// How many bytes of `rest` to write next: all of it if it fits `limit`, else its whole lines that do, else
/// its first line (a line longer than `limit` goes alone).
pub(crate) fn lines_within(rest: &[u8], limit: usize) -> usize {
    if rest.len() <= limit {
        return rest.len();
    }
    rest.get(..limit)
        .and_then(|head| head.iter().rposition(|&b| b == b'\n'))
        .or_else(|| rest.iter().position(|&b| b == b'\n'))
        .map_or(rest.len(), |i| i + 1)
}

/// `NAME.STAMP`, then `NAME.STAMP_001`... for more in the same second: `_` sorts after the `.` of `.gz`, so
/// `ls` and a shell glob (`zcat events.jsonl.*`) list the files in time order, compressed or not (up to 999
/// in one second; retention sorts by number, so it keeps the newest whatever the count).
fn rotated_name(path: &Path, stamp: &str, n: u64) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(".");
    s.push(stamp);
    if n > 0 {
        s.push(format!("_{n:03}"));
    }
    PathBuf::from(s)
}

fn gz(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(".gz");
    PathBuf::from(s)
}

/// Where `p.gz` is written before it is complete: a hidden name in the same folder (the rename stays on one
/// file system) that neither the log's glob (`events.jsonl*`) nor [`rotated_files`] matches, so `report` and
/// `hunt` never read half a gzip, nor fail on a file gone by the time they open it.
fn gz_temp(p: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(p.file_name().unwrap_or_default());
    name.push(".gz.tmp");
    p.with_file_name(name)
}

/// The folder a log file's rotated and temporary files are in (`.` for a bare file name).
fn log_dir(path: &Path) -> Option<&Path> {
    let dir = path.parent()?;
    Some(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
}

/// Removes the temporary files of compressions a crash interrupted ([`gz_temp`] names, hidden from the logs'
/// glob and from retention, so nothing else would): called when the log is opened, before this process
/// compresses anything. The rotated file each was made from is still there, whole.
fn remove_unfinished_compressions(path: &Path) {
    let (Some(dir), Some(name)) = (log_dir(path), path.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let prefix = format!(".{name}.");
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let n = e.file_name();
        let Some(n) = n.to_str() else { continue };
        if n.starts_with(&prefix)
            && n.ends_with(".gz.tmp")
            && std::fs::remove_file(e.path()).is_ok()
        {
            tracing::info!(file = %e.path().display(), "removed the temporary file of an interrupted compression");
        }
    }
}

/// Writes `p.gz` next to `p` (via a temporary name, so no half file is ever seen) and removes `p`.
fn compress(p: &Path) -> std::io::Result<()> {
    let out = gz(p);
    let tmp = gz_temp(p);
    let mut input = File::open(p)?;
    let mut enc =
        flate2::write::GzEncoder::new(File::create(&tmp)?, flate2::Compression::default());
    std::io::copy(&mut input, &mut enc)?;
    enc.finish()?.sync_all()?;
    std::fs::rename(&tmp, &out)?;
    std::fs::remove_file(p)
}

/// The rotated files of `path`, oldest first.
pub fn rotated_files(path: &Path) -> Vec<PathBuf> {
    let Some(dir) = log_dir(path) else {
        return Vec::new();
    };
    let Ok(rd) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut out: Vec<((String, u64), PathBuf)> = rd
        .flatten()
        .filter_map(|e| {
            let p = e.path();
            Some((rotated_key(path, &p)?, p))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, p)| p).collect()
}

/// Stamp and number of one of `path`'s rotated files (`NAME.STAMP[_NNN][.gz]`), which order them by age;
/// `None` for any other name (a temporary file, logrotate's `NAME.1`).
fn rotated_key(path: &Path, rotated: &Path) -> Option<(String, u64)> {
    let name = path.file_name()?.to_str()?;
    let rest = rotated.file_name()?.to_str()?.strip_prefix(name)?;
    let rest = rest.strip_prefix('.')?;
    let rest = rest.strip_suffix(".gz").unwrap_or(rest);
    let (stamp, n) = match rest.split_once('_') {
        Some((stamp, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (stamp, n.parse().ok()?)
        }
        Some(_) => return None,
        None => (rest, 0),
    };
    let b = stamp.as_bytes();
    let ours = b.len() == 18
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b'T'
        && b[17] == b'Z';
    ours.then(|| (stamp.to_string(), n))
}

fn prune(path: &Path, keep: usize) {
    let files = rotated_files(path);
    let excess = files.len().saturating_sub(keep);
    for old in &files[..excess] {
        match std::fs::remove_file(old) {
            Ok(()) => tracing::info!(path = %old.display(), "old log removed (retention)"),
            Err(e) => tracing::warn!(path = %old.display(), error = %e, "cannot remove old log"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("c2sink-logfile-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn rotated_names_sort_in_time_order_compressed_or_not() {
        let p = Path::new("/var/log/c2sink/events.jsonl");
        let names = |gzipped: bool| -> Vec<PathBuf> {
            [
                ("2026-11-29T022545Z", 0),
                ("2026-11-29T022545Z", 1),
                ("2026-11-29T022545Z", 2),
                ("2026-11-29T022546Z", 0),
            ]
            .into_iter()
            .map(|(stamp, n)| {
                let r = rotated_name(p, stamp, n);
                if gzipped { gz(&r) } else { r }
            })
            .collect()
        };
        for gzipped in [false, true] {
            let mut sorted = names(gzipped);
            sorted.sort();
            assert_eq!(sorted, names(gzipped), "gzipped: {gzipped}");
        }
    }

    #[test]
    fn rotates_by_size_and_keeps_the_newest() {
        let d = tempdir("size");
        let p = d.join("events.log");
        let rot = Rotation {
            max_size: Some(100),
            max_age: None,
            keep: 2,
            gzip: false,
        };
        std::fs::write(d.join("events.log.1"), "from logrotate\n").unwrap();
        let mut f = LogFile::open(&p, rot).unwrap();
        let line = [b'x'; 39].iter().chain(b"\n").copied().collect::<Vec<u8>>();
        for _ in 0..12 {
            f.write_lines(&line).unwrap();
        }
        let rotated = rotated_files(&p);
        assert_eq!(rotated.len(), 2, "{rotated:?}");
        assert!(
            std::fs::metadata(d.join("events.log.1")).is_ok(),
            "logrotate's files are not ours to prune"
        );
        for r in &rotated {
            assert_eq!(std::fs::read(r).unwrap().len(), 80);
        }
        // 12 lines: 2 per file; 4 rotations happened, 2 files pruned, the current holds the last 2.
        assert_eq!(std::fs::read(&p).unwrap().len(), 80);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// One batch much larger than `rotate_size` (a burst the writer took in one go) is spread over files
    /// that each stay within it; only a single line longer than the limit may pass it.
    #[test]
    fn a_batch_larger_than_rotate_size_is_spread_over_files() {
        let d = tempdir("big-batch");
        let p = d.join("events.log");
        let rot = Rotation {
            max_size: Some(100),
            max_age: None,
            keep: 50,
            gzip: false,
        };
        let mut f = LogFile::open(&p, rot).unwrap();
        let line = |n: usize| format!("{}{n:09}\n", "x".repeat(29)).into_bytes();
        f.write_lines(&line(0)).unwrap();
        let batch: Vec<u8> = (1..=20).flat_map(line).collect();
        f.write_lines(&batch).unwrap();
        let long: Vec<u8> = [b'y'; 250].iter().chain(b"\n").copied().collect();
        f.write_lines(&long).unwrap();
        f.write_lines(&line(21)).unwrap();
        let mut files = rotated_files(&p);
        files.push(p.clone());
        let mut all = Vec::new();
        for r in &files {
            let text = std::fs::read(r).unwrap();
            let alone = text == long;
            assert!(
                text.len() <= 100 || alone,
                "{} holds {} bytes",
                r.display(),
                text.len()
            );
            assert!(text.ends_with(b"\n"), "whole lines only");
            all.extend(text);
        }
        // Nothing lost, nothing twice, in order.
        let want: Vec<u8> = (0..=20)
            .flat_map(line)
            .chain(long.iter().copied())
            .chain(line(21))
            .collect();
        assert_eq!(all, want);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rotates_by_age_even_when_idle() {
        let d = tempdir("age");
        let p = d.join("events.log");
        let rot = Rotation {
            max_size: None,
            max_age: Some(Duration::from_secs(3600)),
            keep: 3,
            gzip: false,
        };
        // An hour passes between the steps, by moving the file's opening time back an hour: a machine
        // however slow cannot make the file old enough in between by itself.
        let hour_ago = || SystemTime::now() - Duration::from_secs(3601);
        let mut f = LogFile::open(&p, rot).unwrap();
        f.write_lines(b"old\n").unwrap();
        f.tick();
        assert_eq!(rotated_files(&p).len(), 0, "not old yet");
        f.opened = hour_ago();
        f.tick();
        assert_eq!(rotated_files(&p).len(), 1);
        assert_eq!(std::fs::read(&p).unwrap().len(), 0);
        // An empty file is not rotated.
        f.opened = hour_ago();
        f.tick();
        assert_eq!(rotated_files(&p).len(), 1);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// Many rotations in one second (a burst against a small `rotate_size`): whatever retention deletes, the
    /// files kept are the newest, so the lines left are the last ones written, none missing in between.
    #[test]
    fn many_rotations_in_one_second_keep_the_newest_files() {
        let d = tempdir("same-second");
        let p = d.join("events.log");
        let rot = Rotation {
            max_size: Some(20),
            max_age: None,
            keep: 3,
            gzip: false,
        };
        let mut f = LogFile::open(&p, rot).unwrap();
        for i in 0..200 {
            f.write_lines(format!("line {i:04}\n").as_bytes()).unwrap();
        }
        let mut files = rotated_files(&p);
        assert_eq!(files.len(), 3, "{files:?}");
        files.push(p.clone());
        let text: String = files
            .iter()
            .map(|r| std::fs::read_to_string(r).unwrap())
            .collect();
        let want: String = (192..200).map(|i| format!("line {i:04}\n")).collect();
        assert_eq!(text, want, "{files:?}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn rotated_files_sort_by_number_past_999() {
        let d = tempdir("numbers");
        let p = d.join("events.log");
        for n in [0, 1, 999, 1000, 1001] {
            std::fs::write(rotated_name(&p, "2026-11-29T022545Z", n), "x\n").unwrap();
        }
        std::fs::write(gz(&rotated_name(&p, "2026-11-29T022544Z", 7)), "x\n").unwrap();
        for other in [
            "events.log.1",
            "events.log.2026-11-29T022545Z_x",
            ".events.log.gz.tmp",
        ] {
            std::fs::write(d.join(other), "x\n").unwrap();
        }
        let keys: Vec<(String, u64)> = rotated_files(&p)
            .iter()
            .map(|r| rotated_key(&p, r).unwrap())
            .collect();
        let want: Vec<(String, u64)> = [
            ("2026-11-29T022544Z", 7),
            ("2026-11-29T022545Z", 0),
            ("2026-11-29T022545Z", 1),
            ("2026-11-29T022545Z", 999),
            ("2026-11-29T022545Z", 1000),
            ("2026-11-29T022545Z", 1001),
        ]
        .map(|(s, n)| (s.to_string(), n))
        .to_vec();
        assert_eq!(keys, want);
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A compression a crash interrupted leaves a hidden temporary file that nothing else removes: the next
    /// start does, and leaves other files alone.
    #[test]
    fn opening_the_log_removes_the_temporary_files_of_interrupted_compressions() {
        let d = tempdir("gz-temp");
        let p = d.join("events.log");
        let rotated = rotated_name(&p, "2026-11-29T022545Z", 0);
        std::fs::write(&rotated, "kept\n").unwrap();
        let temp = gz_temp(&rotated);
        std::fs::write(&temp, "half a gzip").unwrap();
        let other = d.join(".queries.log.2026-11-29T022545Z.gz.tmp");
        std::fs::write(&other, "another log's").unwrap();
        let _f = LogFile::open(&p, Rotation::default()).unwrap();
        assert!(
            !temp.exists(),
            "the unfinished compression's temp file is gone"
        );
        assert!(rotated.exists() && other.exists());
        let _ = std::fs::remove_dir_all(&d);
    }

    /// A quiet spell longer than `rotate_every` must not rotate the empty file when the next line comes, and
    /// that line starts the file's age.
    #[test]
    fn a_line_after_a_quiet_spell_starts_the_age_of_an_empty_file() {
        let d = tempdir("quiet");
        let p = d.join("events.log");
        let rot = Rotation {
            max_size: None,
            max_age: Some(Duration::from_secs(3600)),
            keep: 3,
            gzip: false,
        };
        let mut f = LogFile::open(&p, rot).unwrap();
        // Opened (empty) more than an hour ago, nothing written since.
        f.opened = SystemTime::now() - Duration::from_secs(7200);
        f.write_lines(b"after the quiet\n").unwrap();
        assert!(rotated_files(&p).is_empty(), "an empty file rotated");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "after the quiet\n");
        f.tick();
        assert!(
            rotated_files(&p).is_empty(),
            "the file's hour starts with its first line"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn the_gzip_temporary_file_is_hidden_from_the_logs_glob() {
        let p = Path::new("/var/log/c2sink/events.jsonl.2026-11-29T022545Z_001");
        let tmp = gz_temp(p);
        assert_eq!(
            tmp.parent(),
            p.parent(),
            "same folder: the rename stays atomic"
        );
        let name = tmp.file_name().unwrap().to_str().unwrap();
        assert_eq!(name, ".events.jsonl.2026-11-29T022545Z_001.gz.tmp");
        assert!(
            !name.starts_with("events.jsonl"),
            "matched by events.jsonl*"
        );
        assert!(rotated_key(Path::new("/var/log/c2sink/events.jsonl"), &tmp).is_none());
    }

    #[test]
    fn gzips_rotated_files() {
        let d = tempdir("gzip");
        let p = d.join("q.log");
        let rot = Rotation {
            max_size: Some(10),
            max_age: None,
            keep: 5,
            gzip: true,
        };
        let mut f = LogFile::open(&p, rot).unwrap();
        f.write_lines(b"first line\n").unwrap();
        f.write_lines(b"second line\n").unwrap();
        let mut found = None;
        // Compression runs on a thread of its own: up to 10 s on a loaded machine.
        for _ in 0..1000 {
            found = rotated_files(&p)
                .into_iter()
                .find(|r| r.extension().is_some_and(|e| e == "gz"));
            if found.is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let gzfile = found.expect("a .gz rotated file");
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::GzDecoder::new(File::open(gzfile).unwrap()),
            &mut text,
        )
        .unwrap();
        assert_eq!(text, "first line\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn recreates_a_deleted_file_and_survives_a_removed_folder() {
        let d = tempdir("gone");
        let p = d.join("events.log");
        let mut f = LogFile::open(&p, Rotation::default()).unwrap();
        f.write_lines(b"a\n").unwrap();
        std::fs::remove_file(&p).unwrap();
        f.write_lines(b"b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "b\n");
        std::fs::remove_dir_all(&d).unwrap();
        assert!(f.write_lines(b"c\n").is_err());
        std::fs::create_dir_all(&d).unwrap();
        f.write_lines(b"d\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "d\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_moved_without_sighup_keeps_its_lines_and_the_path_is_reopened_within_the_check_interval()
     {
        let d = tempdir("moved");
        let p = d.join("events.log");
        let moved = d.join("events.log.old");
        let mut f = LogFile::open(&p, Rotation::default()).unwrap();
        f.write_lines(b"a\n").unwrap();
        std::fs::rename(&p, &moved).unwrap();
        f.write_lines(b"b\n").unwrap();
        f.tick();
        f.write_lines(b"c\n").unwrap();
        assert!(
            !p.exists(),
            "the path is looked up at most once per interval"
        );
        f.path_checked -= PATH_CHECK_EVERY;
        f.tick();
        f.write_lines(b"d\n").unwrap();
        assert_eq!(std::fs::read_to_string(&moved).unwrap(), "a\nb\nc\n");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "d\n");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_file_truncated_under_us_is_followed() {
        let d = tempdir("trunc");
        let p = d.join("events.log");
        let rot = Rotation {
            max_size: Some(30),
            max_age: None,
            keep: 3,
            gzip: false,
        };
        let mut f = LogFile::open(&p, rot).unwrap();
        f.write_lines(b"0123456789012345678\n").unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(0)
            .unwrap();
        f.write_lines(b"after the truncate\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "after the truncate\n");
        assert!(
            rotated_files(&p).is_empty(),
            "no rotation from a stale size"
        );
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_full_disk_is_an_error_not_a_panic() {
        let mut f = LogFile::open(Path::new("/dev/full"), Rotation::default()).unwrap();
        assert!(f.write_lines(b"x\n").is_err());
    }
}
