//! The event store: one table of events, keyed by (origin, seq), in SQLite, PostgreSQL or
//! MySQL/MariaDB through sqlx's `Any` driver. Inserts are idempotent (a duplicate key is
//! skipped), so a batch delivered twice is stored once.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Executor as _, Row as _};

use super::Event;

/// Which SQL dialect the URL speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
    Mysql,
}

impl Backend {
    pub fn of(url: &str) -> anyhow::Result<Self> {
        match url.split(':').next().unwrap_or_default() {
            "sqlite" => Ok(Backend::Sqlite),
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "mysql" | "mariadb" => Ok(Backend::Mysql),
            other => anyhow::bail!("unsupported database \"{other}:\""),
        }
    }

    /// `?` placeholders as this backend writes them.
    fn sql(self, text: &str) -> String {
        if self != Backend::Postgres {
            return text.to_string();
        }
        let mut out = String::with_capacity(text.len() + 16);
        let mut n = 0;
        for c in text.chars() {
            if c == '?' {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            } else {
                out.push(c);
            }
        }
        out
    }

    /// Insert that skips rows whose key exists.
    fn insert_ignore(self) -> (&'static str, &'static str) {
        match self {
            Backend::Sqlite => ("INSERT OR IGNORE INTO", ""),
            Backend::Postgres => ("INSERT INTO", " ON CONFLICT DO NOTHING"),
            Backend::Mysql => ("INSERT IGNORE INTO", ""),
        }
    }
}

/// The schema, one step per version; each step's statements run in order, once.
fn migrations() -> Vec<Vec<&'static str>> {
    vec![vec![
        "CREATE TABLE IF NOT EXISTS duet_events (
            origin VARCHAR(64) NOT NULL,
            seq BIGINT NOT NULL,
            at_ms BIGINT NOT NULL,
            severity VARCHAR(16) NOT NULL,
            source VARCHAR(128) NOT NULL,
            code VARCHAR(128) NOT NULL,
            message TEXT NOT NULL,
            hash VARCHAR(64) NOT NULL,
            PRIMARY KEY (origin, seq)
        )",
        "CREATE INDEX duet_events_at ON duet_events (at_ms)",
        // How far each spool file has been written into the store (see `spool.rs`).
        "CREATE TABLE IF NOT EXISTS duet_spool (
            file VARCHAR(200) NOT NULL PRIMARY KEY,
            done BIGINT NOT NULL
        )",
    ]]
}

/// Columns, in insert order.
const COLUMNS: &str = "origin, seq, at_ms, severity, source, code, message, hash";
/// Rows per INSERT statement (8 parameters each; every backend takes 4,000).
const ROWS_PER_STATEMENT: usize = 500;

/// Filters of a history query.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub origin: Option<String>,
    pub severity: Option<String>,
    pub code: Option<String>,
    pub source: Option<String>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub limit: u64,
    pub offset: u64,
    /// Oldest first (default: newest first).
    pub ascending: bool,
}

/// A connection pool to the event store.
#[derive(Clone)]
pub struct Store {
    pool: sqlx::AnyPool,
    backend: Backend,
    /// For a connection of its own when the pool cannot say why it has none.
    url: String,
}

/// Where `url` points, for a reason shown to operators: `host:port` (the default port of the
/// backend when none is written), the file of an SQLite URL. Never the user or password.
pub fn endpoint(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    if scheme == "sqlite" {
        return rest.split('?').next().unwrap_or_default().to_string();
    }
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    if host.is_empty() {
        return "the database".into();
    }
    // `[::1]:5432` and `db:5432` have a port; `[::1]` and `db` do not.
    let has_port = host
        .rsplit_once(':')
        .is_some_and(|(before, port)| !before.ends_with('[') && !port.contains(']'));
    if has_port {
        return host.to_string();
    }
    match scheme {
        "postgres" | "postgresql" => format!("{host}:5432"),
        "mysql" | "mariadb" => format!("{host}:3306"),
        _ => host.to_string(),
    }
}

/// A connection error in the words of the Database row: "cannot connect to
/// 127.0.0.1:5433: connection refused".
fn connect_error(url: &str, e: &sqlx::Error) -> String {
    let to = endpoint(url);
    match e {
        sqlx::Error::Io(io) => {
            let words = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
                std::io::ErrorKind::ConnectionReset => "connection reset".to_string(),
                std::io::ErrorKind::TimedOut => "timed out".to_string(),
                std::io::ErrorKind::HostUnreachable => "host unreachable".to_string(),
                std::io::ErrorKind::NetworkUnreachable => "network unreachable".to_string(),
                std::io::ErrorKind::NotFound => "no such socket or file".to_string(),
                std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
                _ => io.to_string(),
            };
            format!("cannot connect to {to}: {words}")
        }
        other => format!("cannot connect to {to}: {other}"),
    }
}

/// Why `url` cannot be connected to, found with a connection of its own, within `within`;
/// `None` when that connection works. The pool retries a refused connection until its
/// deadline and then says only "pool timed out while waiting for an open connection", which
/// hides the cause an operator needs.
pub async fn connect_problem(url: &str, within: Duration) -> Option<String> {
    use sqlx::Connection as _;
    sqlx::any::install_default_drivers();
    match tokio::time::timeout(within, sqlx::AnyConnection::connect(url)).await {
        Ok(Ok(conn)) => {
            let _ = conn.close().await;
            None
        }
        Ok(Err(e)) => Some(connect_error(url, &e)),
        Err(_) => Some(format!(
            "cannot connect to {}: no answer within {}",
            endpoint(url),
            humantime::format_duration(within)
        )),
    }
}

/// Whether an error means the pool had no working connection (rather than a query failing).
fn no_connection(e: &sqlx::Error) -> bool {
    matches!(
        e,
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_)
    )
}

impl Store {
    /// Connects (within `timeout`) and brings the schema up to date.
    pub async fn open(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = Backend::of(url)?;
        if backend == Backend::Sqlite {
            // The file's folder must exist; the file is created by `mode=rwc`.
            if let Some(path) = url
                .strip_prefix("sqlite://")
                .and_then(|p| p.split('?').next())
                .map(std::path::Path::new)
                .and_then(std::path::Path::parent)
                .filter(|p| !p.as_os_str().is_empty())
            {
                tokio::fs::create_dir_all(path)
                    .await
                    .with_context(|| format!("cannot create {}", path.display()))?;
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(if backend == Backend::Sqlite { 4 } else { 8 })
            .min_connections(0)
            .acquire_timeout(timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL with synchronous=NORMAL: a commit survives the process being
                        // killed (the OS has it); only an OS crash can lose the last ones.
                        conn.execute("PRAGMA journal_mode=WAL").await?;
                        conn.execute("PRAGMA synchronous=NORMAL").await?;
                        conn.execute("PRAGMA busy_timeout=5000").await?;
                    }
                    Ok(())
                })
            })
            .connect(url)
            .await;
        let pool = match pool {
            Ok(pool) => pool,
            Err(e) if no_connection(&e) => {
                let why = connect_problem(url, timeout)
                    .await
                    .unwrap_or_else(|| format!("cannot connect to {}: {e}", endpoint(url)));
                anyhow::bail!(why);
            }
            Err(e) => anyhow::bail!(connect_error(url, &e)),
        };
        let store = Store {
            pool,
            backend,
            url: url.to_string(),
        };
        store.migrate().await?;
        Ok(store)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Applies the schema steps not applied yet, recording each in `duet_schema`.
    async fn migrate(&self) -> anyhow::Result<()> {
        self.pool
            .execute("CREATE TABLE IF NOT EXISTS duet_schema (version BIGINT NOT NULL PRIMARY KEY)")
            .await
            .context("cannot create duet_schema")?;
        let done: Option<i64> = sqlx::query("SELECT MAX(version) FROM duet_schema")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?;
        let done = done.unwrap_or(0);
        for (i, step) in migrations().into_iter().enumerate() {
            let version = i as i64 + 1;
            if version <= done {
                continue;
            }
            let mut tx = self.pool.begin().await?;
            for statement in step {
                tx.execute(statement)
                    .await
                    .with_context(|| format!("schema version {version}: {statement}"))?;
            }
            sqlx::query(
                &self
                    .backend
                    .sql("INSERT INTO duet_schema (version) VALUES (?)"),
            )
            .bind(version)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
        }
        Ok(())
    }

    /// The highest sequence number stored for `origin` (0: none).
    pub async fn max_seq(&self, origin: &str) -> anyhow::Result<u64> {
        let row = sqlx::query(
            &self
                .backend
                .sql("SELECT MAX(seq) FROM duet_events WHERE origin = ?"),
        )
        .bind(origin)
        .fetch_one(&self.pool)
        .await?;
        let max: Option<i64> = row.try_get(0)?;
        Ok(max.unwrap_or(0).max(0) as u64)
    }

    /// Inserts events in one transaction; ones already stored are skipped.
    pub async fn insert(&self, events: &[Event]) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        self.insert_in(&mut tx, events).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Inserts events within a transaction.
    pub async fn insert_in(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        events: &[Event],
    ) -> anyhow::Result<()> {
        let (insert, tail) = self.backend.insert_ignore();
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            let mut sql = format!("{insert} duet_events ({COLUMNS}) VALUES ");
            for i in 0..chunk.len() {
                if i > 0 {
                    sql.push(',');
                }
                sql.push_str("(?,?,?,?,?,?,?,?)");
            }
            sql.push_str(tail);
            let sql = self.backend.sql(&sql);
            let mut q = sqlx::query(&sql);
            for e in chunk {
                q = q
                    .bind(e.origin.clone())
                    .bind(e.seq as i64)
                    .bind(e.at as i64)
                    .bind(e.severity.as_str().to_string())
                    .bind(e.source.clone())
                    .bind(e.code.clone())
                    .bind(e.message.clone())
                    .bind(e.hash.clone());
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Inserts events and records that spool file `file` is written up to line `done`, in
    /// one transaction: a replay interrupted anywhere is neither lost nor repeated.
    pub async fn insert_spooled(
        &self,
        events: &[Event],
        file: &str,
        done: u64,
    ) -> anyhow::Result<()> {
        let mut tx = self.pool.begin().await?;
        self.insert_in(&mut tx, events).await?;
        sqlx::query(&self.backend.sql("DELETE FROM duet_spool WHERE file = ?"))
            .bind(file.to_string())
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            &self
                .backend
                .sql("INSERT INTO duet_spool (file, done) VALUES (?, ?)"),
        )
        .bind(file.to_string())
        .bind(done as i64)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// How many lines of spool file `file` are already in the store.
    pub async fn spool_done(&self, file: &str) -> anyhow::Result<u64> {
        let row = sqlx::query(
            &self
                .backend
                .sql("SELECT done FROM duet_spool WHERE file = ?"),
        )
        .bind(file.to_string())
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => r.try_get::<i64, _>(0)?.max(0) as u64,
            None => 0,
        })
    }

    /// Begins a transaction (for inserts that must commit with other writes).
    pub async fn begin(&self) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(self.pool.begin().await?)
    }

    /// `origin`'s events after `after`, in order, at most `limit`.
    pub async fn after(
        &self,
        origin: &str,
        after: u64,
        limit: usize,
    ) -> anyhow::Result<Vec<Event>> {
        let sql = self.backend.sql(&format!(
            "SELECT {COLUMNS} FROM duet_events WHERE origin = ? AND seq > ? ORDER BY seq LIMIT ?"
        ));
        let rows = sqlx::query(&sql)
            .bind(origin)
            .bind(after as i64)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(event).collect()
    }

    /// A page of history, and how many events match the filters in all.
    pub async fn query(&self, q: &Query) -> anyhow::Result<(Vec<Event>, u64)> {
        let mut filter = String::from(" WHERE 1=1");
        let mut texts: Vec<String> = Vec::new();
        let mut numbers: Vec<i64> = Vec::new();
        for (column, value) in [
            ("origin", &q.origin),
            ("severity", &q.severity),
            ("code", &q.code),
            ("source", &q.source),
        ] {
            if let Some(v) = value {
                filter.push_str(&format!(" AND {column} = ?"));
                texts.push(v.clone());
            }
        }
        if let Some(since) = q.since {
            filter.push_str(" AND at_ms >= ?");
            numbers.push(since as i64);
        }
        if let Some(until) = q.until {
            filter.push_str(" AND at_ms < ?");
            numbers.push(until as i64);
        }
        let order = if q.ascending { "ASC" } else { "DESC" };
        let page = self.backend.sql(&format!(
            "SELECT {COLUMNS} FROM duet_events{filter} ORDER BY at_ms {order}, origin, seq {order} LIMIT ? OFFSET ?"
        ));
        let count = self
            .backend
            .sql(&format!("SELECT COUNT(*) FROM duet_events{filter}"));
        let mut p = sqlx::query(&page);
        let mut c = sqlx::query(&count);
        for t in &texts {
            p = p.bind(t.clone());
            c = c.bind(t.clone());
        }
        for n in &numbers {
            p = p.bind(*n);
            c = c.bind(*n);
        }
        let rows = p
            .bind(q.limit as i64)
            .bind(q.offset as i64)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = c.fetch_one(&self.pool).await?.try_get(0)?;
        Ok((
            rows.iter().map(event).collect::<anyhow::Result<_>>()?,
            total.max(0) as u64,
        ))
    }

    /// Deletes events older than `before`; returns how many.
    pub async fn delete_before(&self, before: u64) -> anyhow::Result<u64> {
        let done = sqlx::query(&self.backend.sql("DELETE FROM duet_events WHERE at_ms < ?"))
            .bind(before as i64)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }

    /// Runs the health query within `timeout`; its error is the Database row's reason. When
    /// the pool has no working connection, the reason is why a connection cannot be made
    /// ("cannot connect to 127.0.0.1:5433: connection refused"), found with a connection of
    /// its own, rather than the pool's "timed out".
    pub async fn health(&self, query: &str, timeout: Duration) -> Result<(), String> {
        let why = match tokio::time::timeout(timeout, self.pool.fetch_optional(query)).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) if no_connection(&e) => format!("the health query failed: {e}"),
            Ok(Err(e)) => return Err(format!("the health query failed: {e}")),
            Err(_) => format!(
                "the health query did not answer within {}",
                humantime::format_duration(timeout)
            ),
        };
        Err(connect_problem(&self.url, timeout).await.unwrap_or(why))
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn event(row: &AnyRow) -> anyhow::Result<Event> {
    let seq: i64 = row.try_get("seq")?;
    let at: i64 = row.try_get("at_ms")?;
    let origin: String = row.try_get("origin")?;
    let severity: String = row.try_get("severity")?;
    Ok(Event {
        id: super::event_id(&origin, seq as u64),
        origin,
        seq: seq as u64,
        at: at as u64,
        severity: severity.parse().map_err(anyhow::Error::msg)?,
        source: row.try_get("source")?,
        code: row.try_get("code")?,
        message: row.try_get("message")?,
        hash: row.try_get::<String, _>("hash")?.trim().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_endpoint_names_host_and_port_never_the_password() {
        assert_eq!(
            endpoint("postgres://duet:secret@127.0.0.1:5433/duet"),
            "127.0.0.1:5433"
        );
        assert_eq!(
            endpoint("postgres://duet@db.example/duet"),
            "db.example:5432"
        );
        assert_eq!(
            endpoint("mysql://u:p@[::1]/x?ssl-mode=disabled"),
            "[::1]:3306"
        );
        assert_eq!(endpoint("mariadb://u@[::1]:3307/x"), "[::1]:3307");
        assert_eq!(
            endpoint("sqlite:///var/lib/duet/a-events.db?mode=rwc"),
            "/var/lib/duet/a-events.db"
        );
    }

    #[tokio::test]
    async fn a_refused_database_is_named_with_its_cause_not_the_pools_timeout() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let url = format!("postgres://duet:secret@127.0.0.1:{port}/duet");
        let started = std::time::Instant::now();
        let err = Store::open(&url, Duration::from_secs(1))
            .await
            .err()
            .expect("nothing listens there");
        assert_eq!(
            format!("{err:#}"),
            format!("cannot connect to 127.0.0.1:{port}: connection refused")
        );
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(
            connect_problem(&url, Duration::from_secs(1)).await,
            Some(format!(
                "cannot connect to 127.0.0.1:{port}: connection refused"
            ))
        );
    }

    #[test]
    fn postgres_placeholders_are_numbered() {
        assert_eq!(
            Backend::Postgres.sql("a = ? AND b = ? LIMIT ?"),
            "a = $1 AND b = $2 LIMIT $3"
        );
        assert_eq!(Backend::Sqlite.sql("a = ?"), "a = ?");
    }
}
