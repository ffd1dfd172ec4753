//! A PostgreSQL server for tests: `PERFGATE_TEST_DATABASE_URL`, or a throwaway cluster started
//! with `initdb` and `pg_ctl` (as the `postgres` user when running as root) on a free loopback
//! port. A watchdog process stops the cluster and removes its files once this test process
//! exits, however it exits.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use diesel::{Connection, PgConnection, RunQueryDsl};

static BASE: OnceLock<Option<String>> = OnceLock::new();

fn required() -> bool {
    std::env::var("PERFGATE_REQUIRE_POSTGRES").is_ok_and(|v| v == "1")
}

fn find_bin(name: &str) -> Option<PathBuf> {
    if let Ok(path) = std::env::var("PATH") {
        for d in std::env::split_paths(&path) {
            let p = d.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .map(|e| e.path().join("bin").join(name))
        .filter(|p| p.is_file())
        .collect();
    candidates.sort();
    candidates.pop()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn as_postgres(root: bool, bin: &Path) -> Command {
    let mut c = if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    // The postgres user may not be allowed into the test's working directory.
    c.current_dir("/");
    c
}

/// A running throwaway cluster.
pub struct Cluster {
    pub url: String,
    data: PathBuf,
    pg_ctl: PathBuf,
    root: bool,
    opts: String,
    log: PathBuf,
}

impl Cluster {
    /// `pg_ctl stop -m fast`: the database goes away under the servers using it.
    pub fn stop(&self) {
        let ok = as_postgres(self.root, &self.pg_ctl)
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "pg_ctl stop failed");
    }

    /// Starts it again on the same port and data.
    pub fn start(&self) {
        let ok = as_postgres(self.root, &self.pg_ctl)
            .arg("-D")
            .arg(&self.data)
            .args(["-o", &self.opts, "-l"])
            .arg(&self.log)
            .args(["-w", "-t", "60", "start"])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "pg_ctl start failed");
    }
}

/// A cluster of its own (for tests that stop it), or `None` when PostgreSQL is unavailable and
/// not required.
pub fn dedicated_cluster() -> Option<Cluster> {
    match start_cluster() {
        Ok(c) => Some(c),
        Err(e) => {
            if required() {
                panic!("PERFGATE_REQUIRE_POSTGRES=1 but no PostgreSQL could be started: {e}");
            }
            eprintln!("\n!!! SKIPPING a PostgreSQL test: no local cluster ({e}).\n");
            None
        }
    }
}

/// A cluster of its own serving TLS with a certificate for `127.0.0.1`/`localhost` signed by a
/// throwaway CA (made with the `openssl` command), with that CA's certificate and another,
/// unrelated CA's.
pub struct TlsCluster {
    pub cluster: Cluster,
    pub ca: PathBuf,
    pub wrong_ca: PathBuf,
}

pub fn tls_cluster() -> Option<TlsCluster> {
    let mut paths = None;
    let setup = |dir: &Path| -> Result<String, String> {
        let tls = dir.join("tls");
        std::fs::create_dir_all(&tls).map_err(|e| e.to_string())?;
        let openssl = |args: &[&str]| -> Result<(), String> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&tls)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| format!("openssl: {e} (is the openssl command installed?)"))?;
            if out.status.success() {
                Ok(())
            } else {
                Err(format!(
                    "openssl {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            }
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        for ca in ["ca", "wrong-ca"] {
            let (key, crt, subj) = (
                format!("{ca}.key"),
                format!("{ca}.crt"),
                format!("/CN=perfgate test {ca}"),
            );
            let mut args = vec![
                "req", "-x509", "-days", "2", "-subj", &subj, "-keyout", &key, "-out", &crt,
            ];
            args.extend(ec);
            args.extend([
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ]);
            openssl(&args)?;
        }
        let mut args = vec![
            "req",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
        ];
        args.extend(ec);
        openssl(&args)?;
        std::fs::write(
            tls.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .map_err(|e| e.to_string())?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "san.ext",
            "-out",
            "server.crt",
        ])?;
        if is_root() {
            let ok = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(&tls)
                .status()
                .map_err(|e| e.to_string())?
                .success();
            if !ok {
                return Err("chown of the TLS files failed".into());
            }
        }
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            tls.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| e.to_string())?;
        paths = Some((tls.join("ca.crt"), tls.join("wrong-ca.crt")));
        Ok(format!(
            " -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            tls.join("server.crt").display(),
            tls.join("server.key").display()
        ))
    };
    match start_cluster_with(setup) {
        Ok(cluster) => {
            let (ca, wrong_ca) = paths.expect("set up");
            Some(TlsCluster {
                cluster,
                ca,
                wrong_ca,
            })
        }
        Err(e) => {
            if required() {
                panic!("PERFGATE_REQUIRE_POSTGRES=1 but no TLS PostgreSQL could be started: {e}");
            }
            eprintln!("\n!!! SKIPPING a PostgreSQL TLS test: {e}\n");
            None
        }
    }
}

fn start_cluster() -> Result<Cluster, String> {
    start_cluster_with(|_| Ok(String::new()))
}

/// `setup` prepares files in the cluster's directory before it starts and answers extra
/// server options.
fn start_cluster_with(
    setup: impl FnOnce(&Path) -> Result<String, String>,
) -> Result<Cluster, String> {
    let initdb = find_bin("initdb").ok_or("initdb not found")?;
    let pg_ctl = find_bin("pg_ctl").ok_or("pg_ctl not found")?;
    let root = is_root();
    let dir = std::env::temp_dir().join(format!(
        "perfgate-pg-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    if root {
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(&dir)
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if !ok {
            return Err("chown to postgres failed (is there a postgres user?)".into());
        }
    }
    let data = dir.join("data");
    let out = as_postgres(root, &initdb)
        .arg("-D")
        .arg(&data)
        .args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
            "--no-locale",
        ])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = super::free_port();
    let extra = setup(&dir)?;
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300{extra}",
        dir.display()
    );
    let out = as_postgres(root, &pg_ctl)
        .arg("-D")
        .arg(&data)
        .args(["-o", &opts, "-l"])
        .arg(dir.join("pg.log"))
        .args(["-w", "-t", "60", "start"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("pg_ctl: {e}"))?;
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("pg.log")).unwrap_or_default();
        return Err(format!(
            "pg_ctl start failed: {}{log}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // Watchdog: stops the cluster when this test process is gone.
    let stop = if root {
        format!(
            "runuser -u postgres -- {} -D {} -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    } else {
        format!(
            "{} -D {} -m immediate stop",
            pg_ctl.display(),
            data.display()
        )
    };
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 1; done; {stop} >/dev/null 2>&1; rm -rf {dir}",
        pid = std::process::id(),
        dir = dir.display()
    );
    {
        use std::os::unix::process::CommandExt;
        Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| format!("watchdog: {e}"))?;
    }
    Ok(Cluster {
        url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
        data,
        pg_ctl,
        root,
        opts,
        log: dir.join("pg.log"),
    })
}

/// URL of a maintenance database on the test server, once per process.
pub fn base_url() -> Option<String> {
    BASE.get_or_init(|| {
        if let Ok(url) = std::env::var("PERFGATE_TEST_DATABASE_URL") {
            if !url.is_empty() {
                return Some(url);
            }
        }
        match start_cluster() {
            Ok(c) => Some(c.url),
            Err(e) => {
                if required() {
                    panic!("PERFGATE_REQUIRE_POSTGRES=1 but no PostgreSQL could be started: {e}");
                }
                eprintln!(
                    "\n!!! SKIPPING PostgreSQL tests: no PERFGATE_TEST_DATABASE_URL and no local cluster ({e}).\n!!! Set PERFGATE_REQUIRE_POSTGRES=1 to make this a failure.\n"
                );
                None
            }
        }
    })
    .clone()
}

/// A new, empty database on the test server.
pub fn fresh_database_url() -> Option<String> {
    let base = base_url()?;
    let name = format!("perfgate_t_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::establish(&base)
        .unwrap_or_else(|e| panic!("cannot connect to test PostgreSQL: {e}"));
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .expect("CREATE DATABASE");
    let (prefix, _) = base.rsplit_once('/').expect("database URL has a path");
    Some(format!("{prefix}/{name}"))
}
