//! The engine's transactional state store: one SQLite database (WAL,
//! synchronous=NORMAL) with a row per container and per pod. Every change
//! is one transaction, so a crash leaves the old row or the new one, never
//! a mix. A commit is in the WAL when it returns, so a killed silod loses
//! nothing; the WAL is fsynced at checkpoints, so a host power loss can
//! lose the last commits (never consistency), which recovery then
//! reconciles from the monitors' exit records.
//!
//! The schema is versioned (`PRAGMA user_version`) and brought up to date
//! by [`MIGRATIONS`], in order, each in one transaction with the version
//! bump. Version 1 is the schema silod had before it did this (its
//! databases say 0 and hold the `containers` table): rows whose record was
//! a Docker request body, which only a front end can read, so moving them
//! to version 2 asks a [`LegacyRecords`] to translate each one.

use crate::error::{Error, Result};
use crate::model::Container;
use crate::pods::Pod;
use rusqlite::{params, Connection, OptionalExtension, Transaction};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Turns a container row of schema version 1 (written by silod before the
/// engine had a model of its own: a Docker create request inside) into a
/// [`Container`]. The front end that wrote such rows implements it (the
/// Docker adapter).
pub trait LegacyRecords: Send + Sync {
    /// `record` is the row's `record` column, `state` its `state` column
    /// (which wins over the state inside the record).
    fn container(&self, record: &str, state: &str) -> std::result::Result<Container, String>;
}

type Migration = fn(&Transaction<'_>, Option<&dyn LegacyRecords>) -> Result<()>;

/// Schema migrations: entry `i` brings version `i` to `i + 1`.
const MIGRATIONS: &[Migration] = &[v0_to_v1, v1_to_v2];

/// The schema version this engine writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// 0 → 1: the table silod had before the schema had a version.
fn v0_to_v1(tx: &Transaction<'_>, _: Option<&dyn LegacyRecords>) -> Result<()> {
    tx.execute_batch(
        "CREATE TABLE IF NOT EXISTS containers (
             id     TEXT PRIMARY KEY,
             name   TEXT NOT NULL UNIQUE,
             image  TEXT NOT NULL,
             body   TEXT NOT NULL,
             state  TEXT NOT NULL,
             record TEXT NOT NULL
         );",
    )
    .map_err(|e| Error::internal("schema 1", e))
}

/// 1 → 2: the engine's own records, and pods.
fn v1_to_v2(tx: &Transaction<'_>, legacy: Option<&dyn LegacyRecords>) -> Result<()> {
    let sql = |e| Error::internal("migrating to schema 2", e);
    tx.execute_batch(
        "CREATE TABLE containers_v2 (
             id     TEXT PRIMARY KEY,
             name   TEXT NOT NULL UNIQUE,
             record TEXT NOT NULL
         );
         CREATE TABLE pods (
             id     TEXT PRIMARY KEY,
             name   TEXT NOT NULL UNIQUE,
             record TEXT NOT NULL
         );",
    )
    .map_err(sql)?;
    let rows: Vec<(String, String, String)> = {
        let mut stmt = tx
            .prepare("SELECT id, record, state FROM containers")
            .map_err(sql)?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .map_err(sql)?;
        rows.collect::<rusqlite::Result<_>>().map_err(sql)?
    };
    if !rows.is_empty() {
        let Some(legacy) = legacy else {
            return Err(Error::Unavailable(format!(
                "the store holds {} container(s) written by an older silod; only a front end that knows their format (the Docker adapter) can migrate them",
                rows.len()
            )));
        };
        for (id, record, state) in rows {
            let c = legacy.container(&record, &state).map_err(|e| {
                Error::internal(
                    format!("migrating container {id} to schema 2"),
                    std::io::Error::other(e),
                )
            })?;
            let json = serde_json::to_string(&c).map_err(|e| Error::internal("encoding", e))?;
            tx.execute(
                "INSERT INTO containers_v2 (id, name, record) VALUES (?1, ?2, ?3)",
                params![c.id, c.name, json],
            )
            .map_err(sql)?;
        }
    }
    tx.execute_batch(
        "DROP TABLE containers;
         ALTER TABLE containers_v2 RENAME TO containers;",
    )
    .map_err(sql)
}

/// The open database.
pub(crate) struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
    /// Space held on the data root's filesystem, given back when a write
    /// finds the disk full so that `rm -f`, the user's way out of a full
    /// disk, can still record what it does.
    reserve: Mutex<Option<silo_sys::fs::Reserve>>,
}

/// The size of [`Db::reserve`].
const RESERVE_BYTES: usize = 8 << 20;

fn disk_full(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::DiskFull)
}

impl Db {
    /// Opens or creates the database at `path` and migrates it to
    /// [`SCHEMA_VERSION`]. A database of a newer schema is refused.
    pub fn open(path: &Path, legacy: Option<&dyn LegacyRecords>) -> Result<Db> {
        let err = |what: &str, e: rusqlite::Error| {
            Error::internal(format!("state store {}: {what}", path.display()), e)
        };
        let mut conn = Connection::open(path).map_err(|e| err("open", e))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA busy_timeout=5000;",
        )
        .map_err(|e| err("settings", e))?;
        let version: u32 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(|e| err("reading the schema version", e))?;
        // Schema 1 had no version: a database with its table is at 1.
        let fresh = version == 0
            && conn
                .query_row(
                    "SELECT count(*) FROM sqlite_master WHERE type='table' AND name='containers'",
                    [],
                    |r| r.get::<_, i64>(0),
                )
                .map_err(|e| err("reading the schema", e))?
                == 0;
        if version > SCHEMA_VERSION {
            return Err(Error::Unavailable(format!(
                "state store {}: schema version {version} was written by a newer silod (this one knows up to {SCHEMA_VERSION}); run that version or a newer one",
                path.display()
            )));
        }
        for (from, migrate) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction().map_err(|e| err("begin", e))?;
            migrate(&tx, legacy).map_err(|e| match e {
                Error::Internal { context, source } => Error::Internal {
                    context: format!("state store {}: {context}", path.display()),
                    source,
                },
                other => other,
            })?;
            tx.pragma_update(None, "user_version", from as u32 + 1)
                .map_err(|e| err("setting the schema version", e))?;
            tx.commit().map_err(|e| err("commit", e))?;
            if !fresh {
                tracing::info!(
                    "state store {}: migrated to schema {}",
                    path.display(),
                    from + 1
                );
            }
        }
        let db = Db {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
            reserve: Mutex::new(None),
        };
        db.refill_reserve();
        Ok(db)
    }

    fn reserve_path(&self) -> PathBuf {
        self.path.with_extension("reserve")
    }

    /// Makes the reserve again if it was given back (best effort: not
    /// while the disk is still full).
    pub fn refill_reserve(&self) {
        let mut r = self.reserve.lock().unwrap_or_else(|p| p.into_inner());
        if r.is_none() {
            *r = silo_sys::fs::Reserve::adopt_or_create(&self.reserve_path(), RESERVE_BYTES);
        }
    }

    /// Runs a write; when the disk is full, gives the reserve back and
    /// tries once more.
    fn write<T>(&self, op: impl Fn(&Connection) -> rusqlite::Result<T>) -> rusqlite::Result<T> {
        let conn = self.conn();
        match op(&conn) {
            Err(e) if disk_full(&e) => {
                let taken = self
                    .reserve
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .take();
                match taken {
                    Some(r) => {
                        tracing::warn!(
                            "state store {}: the disk is full; giving back the {} MiB reserve",
                            self.path.display(),
                            RESERVE_BYTES >> 20
                        );
                        r.release();
                        op(&conn)
                    }
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn err(
        &self,
        what: impl std::fmt::Display,
        e: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Error {
        Error::internal(format!("state store {}: {what}", self.path.display()), e)
    }

    fn load<T: serde::de::DeserializeOwned>(&self, table: &str) -> Result<Vec<T>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare(&format!("SELECT id, record FROM {table}"))
            .map_err(|e| self.err(format!("loading {table}"), e))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))
            .map_err(|e| self.err(format!("loading {table}"), e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, record) = row.map_err(|e| self.err(format!("loading {table}"), e))?;
            out.push(
                serde_json::from_str(&record)
                    .map_err(|e| self.err(format!("{table} row {id}"), e))?,
            );
        }
        Ok(out)
    }

    /// Inserts or replaces a row in one transaction. A name another row
    /// has is a conflict naming it.
    fn put(&self, table: &str, kind: &str, id: &str, name: &str, json: &str) -> Result<()> {
        let res = self.write(|conn| {
            conn.execute(
                &format!(
                    "INSERT INTO {table} (id, name, record) VALUES (?1, ?2, ?3)
                     ON CONFLICT(id) DO UPDATE SET name=?2, record=?3"
                ),
                params![id, name, json],
            )
        });
        let conn = self.conn();
        match res {
            Ok(_) => Ok(()),
            Err(rusqlite::Error::SqliteFailure(f, _))
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                let owner: Option<String> = conn
                    .query_row(
                        &format!("SELECT id FROM {table} WHERE name = ?1"),
                        params![name],
                        |r| r.get(0),
                    )
                    .optional()
                    .ok()
                    .flatten();
                Err(Error::conflict(format!(
                    "Conflict. The {kind} name \"/{name}\" is already in use by {kind} \"{}\". You have to remove (or rename) that {kind} to be able to reuse that name.",
                    owner.unwrap_or_default()
                )))
            }
            Err(e) => Err(self.err(format!("writing {kind} {id}"), e)),
        }
    }

    fn delete(&self, table: &str, id: &str) -> Result<()> {
        self.write(|conn| conn.execute(&format!("DELETE FROM {table} WHERE id = ?1"), params![id]))
            .map_err(|e| self.err(format!("deleting {id} from {table}"), e))?;
        // A removal is what frees space: hold some again for next time.
        self.refill_reserve();
        Ok(())
    }

    /// Every container row.
    pub fn load_containers(&self) -> Result<Vec<Container>> {
        self.load("containers")
    }

    pub fn put_container(&self, c: &Container) -> Result<()> {
        let json = serde_json::to_string(c).map_err(|e| self.err("encoding", e))?;
        self.put("containers", "container", &c.id, &c.name, &json)
    }

    pub fn delete_container(&self, id: &str) -> Result<()> {
        self.delete("containers", id)
    }

    pub fn load_pods(&self) -> Result<Vec<Pod>> {
        self.load("pods")
    }

    pub fn put_pod(&self, p: &Pod) -> Result<()> {
        let json = serde_json::to_string(p).map_err(|e| self.err("encoding", e))?;
        self.put("pods", "pod", &p.id, &p.name, &json)
    }

    pub fn delete_pod(&self, id: &str) -> Result<()> {
        self.delete("pods", id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Exit, Status};

    fn c(id: &str, name: &str) -> Container {
        let mut c = Container::for_test(id, name);
        c.config.process.args = vec!["echo".into(), "hi".into()];
        c
    }

    fn version(path: &Path) -> u32 {
        Connection::open(path)
            .unwrap()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn rows_survive_reopen_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silo.db");
        {
            let db = Db::open(&path, None).unwrap();
            db.put_container(&c("a1", "web")).unwrap();
            let mut b = c("b2", "db");
            db.put_container(&b).unwrap();
            b.state.status = Status::Exited(Exit {
                code: 7,
                oom_killed: false,
                started_at: String::new(),
                finished_at: String::new(),
            });
            db.put_container(&b).unwrap();
            let e = db.put_container(&c("c3", "web")).unwrap_err();
            assert!(matches!(e, Error::Conflict(_)), "{e}");
            assert!(e.to_string().contains("\"/web\""), "{e}");
            assert!(e.to_string().contains("\"a1\""), "names the owner: {e}");
        }
        assert_eq!(version(&path), SCHEMA_VERSION);
        let db = Db::open(&path, None).unwrap();
        let mut rows = db.load_containers().unwrap();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].config.process.args, ["echo", "hi"]);
        assert_eq!(rows[1].state.last_exit().map(|e| e.code), Some(7));
        db.delete_container("a1").unwrap();
        assert_eq!(db.load_containers().unwrap().len(), 1);
    }

    /// Builds a database the way silod did before schema versions.
    fn old_db(path: &Path, rows: &[(&str, &str)]) {
        let conn = Connection::open(path).unwrap();
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS containers (
                 id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, image TEXT NOT NULL,
                 body TEXT NOT NULL, state TEXT NOT NULL, record TEXT NOT NULL);",
        )
        .unwrap();
        for (id, name) in rows {
            conn.execute(
                "INSERT INTO containers VALUES (?1, ?2, 'busybox', '{}', '{\"status\":\"exited\"}', ?3)",
                params![id, name, format!("{{\"id\":\"{id}\",\"name\":\"{name}\"}}")],
            )
            .unwrap();
        }
    }

    struct Legacy;

    impl LegacyRecords for Legacy {
        fn container(&self, record: &str, state: &str) -> std::result::Result<Container, String> {
            let v: serde_json::Value = serde_json::from_str(record).map_err(|e| e.to_string())?;
            assert!(state.contains("exited"));
            let id = v["id"].as_str().ok_or("no id")?;
            if id == "bad" {
                return Err("cannot read it".into());
            }
            Ok(c(id, v["name"].as_str().ok_or("no name")?))
        }
    }

    #[test]
    fn old_rows_move_to_schema_2_through_the_legacy_reader() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silo.db");
        old_db(&path, &[("a1", "web"), ("b2", "db")]);
        assert_eq!(version(&path), 0);
        // Without a reader the old rows cannot be moved, and nothing changes.
        let e = Db::open(&path, None).err().unwrap();
        assert!(matches!(e, Error::Unavailable(_)), "{e}");
        assert_eq!(version(&path), 1, "schema 1 is the old table");
        let db = Db::open(&path, Some(&Legacy)).unwrap();
        let mut rows = db.load_containers().unwrap();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        let names: Vec<_> = rows.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["web", "db"]);
        assert_eq!(version(&path), 2);
        drop(db);
        // Reopening runs no migration again.
        assert_eq!(
            Db::open(&path, None)
                .unwrap()
                .load_containers()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn a_failed_migration_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silo.db");
        old_db(&path, &[("a1", "web"), ("bad", "db")]);
        let e = Db::open(&path, Some(&Legacy)).err().unwrap();
        assert!(e.to_string().contains("container bad"), "{e}");
        assert_eq!(version(&path), 1);
        let conn = Connection::open(&path).unwrap();
        let n: i64 = conn
            .query_row(
                "SELECT count(*) FROM containers WHERE body = '{}'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(n, 2, "the old rows are untouched");
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silo.db");
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = Db::open(&path, None).err().unwrap();
        assert!(e.to_string().contains("newer silod"), "{e}");
    }
}
