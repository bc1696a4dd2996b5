//! The server's storage: CAS blobs as files under `<data>/cas/<first two hex>/<hex>`, and in
//! SQLite (`<data>/meta.sqlite`) the action-cache entries themselves plus every entry's size and
//! last access, which drive least-recently-used eviction.
//!
//! Uploads land in `<data>/tmp/` and are renamed into place only once verified, and `tmp/` is
//! emptied at startup, so neither a client that disconnects nor a server that is killed can
//! leave a half-written entry where readers look.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use rusqlite::{params, Connection, OptionalExtension};

use super::ServeError;

/// Which namespace an entry lives in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Namespace {
    /// Action-cache entries: small, stored in SQLite.
    Ac,
    /// Content-addressed blobs: files.
    Cas,
}

impl Namespace {
    fn name(self) -> &'static str {
        match self {
            Namespace::Ac => "ac",
            Namespace::Cas => "cas",
        }
    }
}

/// The data directory.
pub struct Storage {
    root: PathBuf,
    db: Mutex<Connection>,
    max_total_size: Option<u64>,
    stored_bytes: AtomicU64,
    n_entries: AtomicU64,
    n_evicted: AtomicU64,
}

fn now_micros() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as i64)
}

fn sqlite_error(path: &Path) -> impl Fn(rusqlite::Error) -> ServeError + '_ {
    move |error| ServeError::Database {
        path: path.to_path_buf(),
        reason: error.to_string(),
    }
}

impl Storage {
    /// Opens (creating) a data directory and empties its `tmp/`.
    pub fn open(root: &Path, max_total_size: Option<u64>) -> Result<Storage, ServeError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ServeError::Io { path, source }
        };
        let tmp = root.join("tmp");
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        for dir in [root.join("cas"), tmp] {
            fs::create_dir_all(&dir).map_err(io(&dir))?;
        }
        let db_path = root.join("meta.sqlite");
        let db = Connection::open(&db_path).map_err(sqlite_error(&db_path))?;
        db.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = NORMAL;
             CREATE TABLE IF NOT EXISTS entries (
                 namespace TEXT NOT NULL,
                 name TEXT NOT NULL,
                 size INTEGER NOT NULL,
                 last_access INTEGER NOT NULL,
                 body BLOB,
                 PRIMARY KEY (namespace, name)
             );
             CREATE INDEX IF NOT EXISTS entries_by_last_access ON entries (last_access);",
        )
        .map_err(sqlite_error(&db_path))?;
        let (stored_bytes, n_entries): (i64, i64) = db
            .query_row(
                "SELECT COALESCE(SUM(size), 0), COUNT(*) FROM entries",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(sqlite_error(&db_path))?;
        Ok(Storage {
            root: root.to_path_buf(),
            db: Mutex::new(db),
            max_total_size,
            stored_bytes: AtomicU64::new(stored_bytes as u64),
            n_entries: AtomicU64::new(n_entries as u64),
            n_evicted: AtomicU64::new(0),
        })
    }

    /// Where uploads start.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where a CAS blob lives.
    pub fn cas_path(&self, hex: &str) -> PathBuf {
        self.root.join("cas").join(&hex[..2]).join(hex)
    }

    /// Bytes stored, entries, and entries evicted since startup.
    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.stored_bytes.load(Ordering::Relaxed),
            self.n_entries.load(Ordering::Relaxed),
            self.n_evicted.load(Ordering::Relaxed),
        )
    }

    fn db_error(&self, error: rusqlite::Error) -> ServeError {
        sqlite_error(&self.root.join("meta.sqlite"))(error)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.db.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// An action-cache entry, marked as used now.
    pub fn get_ac(&self, key: &str) -> Result<Option<Vec<u8>>, ServeError> {
        let db = self.lock();
        let body: Option<Vec<u8>> = db
            .query_row(
                "SELECT body FROM entries WHERE namespace = 'ac' AND name = ?1",
                params![key],
                |row| row.get(0),
            )
            .optional()
            .map_err(|error| self.db_error(error))?;
        if body.is_some() {
            self.touch_locked(&db, Namespace::Ac, key)?;
        }
        Ok(body)
    }

    /// Whether a CAS blob is stored; marks it used when it is.
    pub fn touch_cas(&self, hex: &str) -> Result<Option<u64>, ServeError> {
        let path = self.cas_path(hex);
        let Ok(metadata) = fs::metadata(&path) else {
            return Ok(None);
        };
        let db = self.lock();
        self.touch_locked(&db, Namespace::Cas, hex)?;
        Ok(Some(metadata.len()))
    }

    fn touch_locked(
        &self,
        db: &Connection,
        namespace: Namespace,
        name: &str,
    ) -> Result<(), ServeError> {
        db.execute(
            "UPDATE entries SET last_access = ?1 WHERE namespace = ?2 AND name = ?3",
            params![now_micros(), namespace.name(), name],
        )
        .map_err(|error| self.db_error(error))?;
        Ok(())
    }

    fn record(
        &self,
        db: &Connection,
        namespace: Namespace,
        name: &str,
        size: u64,
        body: Option<&[u8]>,
    ) -> Result<(), ServeError> {
        let previous: Option<i64> = db
            .query_row(
                "SELECT size FROM entries WHERE namespace = ?1 AND name = ?2",
                params![namespace.name(), name],
                |row| row.get(0),
            )
            .optional()
            .map_err(|error| self.db_error(error))?;
        db.execute(
            "INSERT OR REPLACE INTO entries (namespace, name, size, last_access, body) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![namespace.name(), name, size as i64, now_micros(), body],
        )
        .map_err(|error| self.db_error(error))?;
        match previous {
            Some(old) => {
                self.stored_bytes.fetch_sub(old as u64, Ordering::Relaxed);
            }
            None => {
                self.n_entries.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.stored_bytes.fetch_add(size, Ordering::Relaxed);
        Ok(())
    }

    /// Stores an action-cache entry.
    pub fn put_ac(&self, key: &str, body: &[u8]) -> Result<(), ServeError> {
        {
            let db = self.lock();
            self.record(&db, Namespace::Ac, key, body.len() as u64, Some(body))?;
        }
        self.evict()
    }

    /// Renames a verified upload into place as CAS blob `hex`.
    pub fn commit_cas(
        &self,
        upload: tempfile::TempPath,
        hex: &str,
        size: u64,
    ) -> Result<(), ServeError> {
        let path = self.cas_path(hex);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(|source| ServeError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        upload.persist(&path).map_err(|error| ServeError::Io {
            path: path.clone(),
            source: error.error,
        })?;
        {
            let db = self.lock();
            self.record(&db, Namespace::Cas, hex, size, None)?;
        }
        self.evict()
    }

    /// Drops least recently used entries until the total fits `--max-total-size`.
    fn evict(&self) -> Result<(), ServeError> {
        let Some(limit) = self.max_total_size else {
            return Ok(());
        };
        while self.stored_bytes.load(Ordering::Relaxed) > limit {
            let db = self.lock();
            let victims: Vec<(String, String, i64)> = {
                let mut statement = db
                    .prepare(
                        "SELECT namespace, name, size FROM entries ORDER BY last_access LIMIT 32",
                    )
                    .map_err(|error| self.db_error(error))?;
                let rows = statement
                    .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))
                    .map_err(|error| self.db_error(error))?;
                rows.collect::<Result<_, _>>()
                    .map_err(|error| self.db_error(error))?
            };
            if victims.is_empty() {
                return Ok(());
            }
            for (namespace, name, size) in victims {
                if self.stored_bytes.load(Ordering::Relaxed) <= limit {
                    break;
                }
                if namespace == "cas" {
                    let path = self.cas_path(&name);
                    if let Err(error) = fs::remove_file(&path) {
                        if error.kind() != std::io::ErrorKind::NotFound {
                            return Err(ServeError::Io {
                                path,
                                source: error,
                            });
                        }
                    }
                }
                db.execute(
                    "DELETE FROM entries WHERE namespace = ?1 AND name = ?2",
                    params![namespace, name],
                )
                .map_err(|error| self.db_error(error))?;
                self.stored_bytes.fetch_sub(size as u64, Ordering::Relaxed);
                self.n_entries.fetch_sub(1, Ordering::Relaxed);
                self.n_evicted.fetch_add(1, Ordering::Relaxed);
                tracing::info!(namespace, name, size, "evicted");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_recently_used_entries_are_evicted_first() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let storage = Storage::open(dir.path(), Some(10))?;
        storage.put_ac("old", b"12345")?;
        std::thread::sleep(std::time::Duration::from_millis(2));
        storage.put_ac("new", b"12345")?;
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(storage.get_ac("old")?.is_some());
        std::thread::sleep(std::time::Duration::from_millis(2));
        storage.put_ac("newest", b"1234")?;
        assert!(storage.get_ac("old")?.is_some(), "recently read, so kept");
        assert!(
            storage.get_ac("new")?.is_none(),
            "least recently used, so evicted"
        );
        assert_eq!(storage.totals().0, 9);
        Ok(())
    }

    #[test]
    fn leftover_uploads_are_removed_at_startup() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        fs::create_dir_all(dir.path().join("tmp"))?;
        fs::write(dir.path().join("tmp/half-upload"), b"partial")?;
        let storage = Storage::open(dir.path(), None)?;
        assert_eq!(fs::read_dir(storage.tmp_dir())?.count(), 0);
        Ok(())
    }
}
