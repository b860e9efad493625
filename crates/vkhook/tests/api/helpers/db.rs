//! Scratch databases: a directory removed when dropped, a fresh PostgreSQL database, and `skip`.

use std::path::PathBuf;

/// A scratch directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> TempDir {
        let path = std::env::temp_dir().join(format!("{prefix}-{:016x}", rand::random::<u64>()));
        std::fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A fresh PostgreSQL database on TEST_DATABASE_URL's server, dropped when this is dropped; `None` (and a printed
/// `skipped: …`) when TEST_DATABASE_URL is not set.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    pub async fn create(test: &str) -> Option<PgDatabase> {
        let Ok(admin_url) = std::env::var("TEST_DATABASE_URL") else {
            skip(&format!("{test} on PostgreSQL (TEST_DATABASE_URL is not set)"));
            return None;
        };
        let name = format!("vkhook_test_{:016x}", rand::random::<u64>());
        let mut conn =
            <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await.expect("TEST_DATABASE_URL connects");
        sqlx::Executor::execute(&mut conn, format!("CREATE DATABASE {name}").as_str()).await.unwrap();
        let mut url = url::Url::parse(&admin_url).unwrap();
        url.set_path(&format!("/{name}"));
        Some(PgDatabase { admin_url, name, url: url.to_string() })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop may run inside a runtime: do the async work on a thread of its own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                if let Ok(mut conn) = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url).await {
                    let _ = sqlx::Executor::execute(
                        &mut conn,
                        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str(),
                    )
                    .await;
                }
            });
        })
        .join();
    }
}

/// Says a test cannot run here: `skipped: …`, or a failure under `VKHOOK_REQUIRE_ALL_TESTS=1` (CI sets it, so a
/// missing PostgreSQL or chromedriver cannot pass unnoticed).
pub fn skip(why: &str) {
    if std::env::var("VKHOOK_REQUIRE_ALL_TESTS").is_ok_and(|v| v == "1") {
        panic!("VKHOOK_REQUIRE_ALL_TESTS=1, but this test cannot run here: {why}");
    }
    println!("skipped: {why}");
}
