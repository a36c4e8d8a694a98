//! A real PostgreSQL server for a test (started through
//! scripts/postgres-up on a free port, stopped and removed when dropped),
//! and a client to look at its tables. Included by the tests that use it
//! (`#[path]`), beside `support`, whose helpers it takes.

use std::path::PathBuf;
use std::process::Command;

use crate::support::{free_port, script};

/// A PostgreSQL server on 127.0.0.1 for one test.
pub struct Postgres {
    pub port: u16,
    /// The authority that signed the server's TLS certificate, when
    /// started with TLS.
    pub authority: Option<PathBuf>,
}

impl Postgres {
    pub fn start() -> Postgres {
        let mut server = Postgres {
            port: free_port(),
            authority: None,
        };
        server.run("postgres-up", &[]);
        server
    }

    /// A server that also takes TLS connections, with a certificate for
    /// 127.0.0.1 signed by an authority of its own.
    pub fn start_with_tls() -> Postgres {
        let mut server = Postgres {
            port: free_port(),
            authority: None,
        };
        let out = server.run("postgres-up", &["--tls"]);
        server.authority = out
            .lines()
            .find_map(|l| l.strip_prefix("postgres-up: TLS certificate authority "))
            .map(PathBuf::from);
        assert!(
            server.authority.is_some(),
            "no certificate authority in: {out}"
        );
        server
    }

    fn run(&mut self, name: &str, args: &[&str]) -> String {
        let out = Command::new(script(name))
            .args(["--port", &self.port.to_string()])
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{name} failed: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// `postgres://...` to this server's `postgres` database, with `query`.
    pub fn url(&self, query: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/postgres?{query}",
            self.port
        )
    }

    /// A client of its own, for the test's queries.
    pub fn client(&self) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            postgres::NoTls,
        )
        .unwrap()
    }

    /// Stops the server (a fast shutdown), keeping its cluster.
    pub fn stop_keeping_data(&mut self) {
        self.run("postgres-down", &["--keep"]);
    }

    /// Starts the server again on its kept cluster.
    pub fn restart(&mut self) {
        self.run("postgres-up", &[]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new(script("postgres-down"))
            .args(["--port", &self.port.to_string()])
            .output();
    }
}
