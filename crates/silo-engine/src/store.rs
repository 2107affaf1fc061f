//! The engine's transactional state store: one SQLite database (WAL,
//! synchronous=NORMAL) with a row per container. Every change to a
//! container is one transaction, so a crash leaves the old row or the new
//! one, never a mix. A commit is in the WAL when it returns, so a killed
//! silod loses nothing; the WAL is fsynced at checkpoints, so a host power
//! loss can lose the last commits (never consistency), which recovery then
//! reconciles from the monitors' exit records.

use crate::model::Container;
use crate::{EngineError, Result};
use rusqlite::{params, Connection};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The open database.
pub(crate) struct Db {
    path: PathBuf,
    conn: Mutex<Connection>,
}

fn db_err(path: &Path, what: &str, e: impl std::fmt::Display) -> EngineError {
    EngineError::Internal(format!("state store {}: {what}: {e}", path.display()))
}

impl Db {
    /// Opens or creates the database at `path`.
    pub fn open(path: &Path) -> Result<Db> {
        let conn = Connection::open(path).map_err(|e| db_err(path, "open", e))?;
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=NORMAL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS containers (
                 id     TEXT PRIMARY KEY,
                 name   TEXT NOT NULL UNIQUE,
                 image  TEXT NOT NULL,
                 body   TEXT NOT NULL,
                 state  TEXT NOT NULL,
                 record TEXT NOT NULL
             );",
        )
        .map_err(|e| db_err(path, "schema", e))?;
        Ok(Db {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every container row. The `state` column wins over the copy inside
    /// `record` (it is the one state changes write).
    pub fn load_all(&self) -> Result<Vec<Container>> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT id, state, record FROM containers")
            .map_err(|e| db_err(&self.path, "load", e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| db_err(&self.path, "load", e))?;
        let mut out = Vec::new();
        for row in rows {
            let (id, state, record) = row.map_err(|e| db_err(&self.path, "load", e))?;
            let mut c: Container = serde_json::from_str(&record)
                .map_err(|e| db_err(&self.path, &format!("container {id} record"), e))?;
            c.state = serde_json::from_str(&state)
                .map_err(|e| db_err(&self.path, &format!("container {id} state"), e))?;
            out.push(c);
        }
        Ok(out)
    }

    /// Inserts or replaces the whole row, in one transaction. A name
    /// already used by another row is a 409 naming both.
    pub fn put(&self, c: &Container) -> Result<()> {
        let record = serde_json::to_string(c).map_err(|e| db_err(&self.path, "encode", e))?;
        let state = serde_json::to_string(&c.state).map_err(|e| db_err(&self.path, "encode", e))?;
        let body = serde_json::to_string(&c.body).map_err(|e| db_err(&self.path, "encode", e))?;
        let mut conn = self.conn();
        let tx = conn
            .transaction()
            .map_err(|e| db_err(&self.path, "begin", e))?;
        let res = tx.execute(
            "INSERT INTO containers (id, name, image, body, state, record)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT(id) DO UPDATE SET name=?2, image=?3, body=?4, state=?5, record=?6",
            params![c.id, c.name, c.image, body, state, record],
        );
        if let Err(e) = res {
            if let rusqlite::Error::SqliteFailure(f, _) = &e {
                if f.code == rusqlite::ErrorCode::ConstraintViolation {
                    return Err(EngineError::Conflict(format!(
                        "Conflict. The container name \"/{}\" is already in use. You have to remove (or rename) that container to be able to reuse that name.",
                        c.name
                    )));
                }
            }
            return Err(db_err(
                &self.path,
                &format!("writing container {}", c.id),
                e,
            ));
        }
        tx.commit()
            .map_err(|e| db_err(&self.path, &format!("commit container {}", c.id), e))
    }

    /// Deletes the row.
    pub fn delete(&self, id: &str) -> Result<()> {
        let conn = self.conn();
        conn.execute("DELETE FROM containers WHERE id = ?1", params![id])
            .map_err(|e| db_err(&self.path, &format!("deleting container {id}"), e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard_stubs::models::ContainerCreateBody;

    fn c(id: &str, name: &str) -> Container {
        Container {
            created: "2026-01-01T00:00:00Z".into(),
            image_id: "sha256:00".into(),
            body: ContainerCreateBody {
                cmd: Some(vec!["echo".into(), "hi".into()]),
                ..Default::default()
            },
            ..Container::for_test(id, name)
        }
    }

    #[test]
    fn rows_survive_reopen_and_names_are_unique() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("silo.db");
        {
            let db = Db::open(&path).unwrap();
            db.put(&c("a1", "web")).unwrap();
            let mut b = c("b2", "db");
            db.put(&b).unwrap();
            b.state.status = "exited".into();
            b.state.exit_code = 7;
            db.put(&b).unwrap();
            let e = db.put(&c("c3", "web")).unwrap_err();
            assert_eq!(e.status(), 409, "{e}");
            assert!(e.to_string().contains("\"/web\""), "{e}");
        }
        let db = Db::open(&path).unwrap();
        let mut rows = db.load_all().unwrap();
        rows.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].name, "web");
        assert_eq!(
            rows[0].body.cmd.as_deref(),
            Some(&["echo".to_string(), "hi".to_string()][..])
        );
        assert_eq!(rows[1].state.status, "exited");
        assert_eq!(rows[1].state.exit_code, 7);
        db.delete("a1").unwrap();
        assert_eq!(db.load_all().unwrap().len(), 1);
    }
}
