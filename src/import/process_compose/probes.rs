//! `readiness_probe` and `liveness_probe`: process-compose's Kubernetes-like
//! probes as kelpie's `readiness` and `liveness`, the `exec` kind through
//! process-compose's default shell and `http_get` as a URL (or a TCP check
//! for https, which kelpie's plain-HTTP probe cannot speak).

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::draft::{Origin, Probe, ProbeTarget};
use super::super::yaml::Node;
use super::super::ImportError;
use super::{Field, Project, DEFAULT_SHELL};

impl Project<'_> {
    pub(super) fn probe(
        &self,
        node: &Node,
        what: &str,
        vars: &BTreeMap<String, String>,
        notes: &mut Vec<String>,
        drop: &mut impl FnMut(&Origin, String, &str),
    ) -> Result<Probe, ImportError> {
        let short = what.rsplit('.').next().unwrap_or(what).to_string();
        let mut target = None;
        let mut probe = Probe::new(ProbeTarget::Exec(Vec::new()));
        let secs = |n: &Node, w: &str| -> Result<Option<Duration>, ImportError> {
            Ok(Some(Duration::from_secs(n.uint(w)?.into())))
        };
        for (k, v) in node.map(what)? {
            let w = format!("{what}.{}", k.name);
            match k.name.as_str() {
                "exec" => {
                    let mut command = None;
                    for (ek, ev) in v.map(&w)? {
                        match ek.name.as_str() {
                            "command" => {
                                command = Some(self.text(
                                    ev,
                                    &format!("{w}.command"),
                                    vars,
                                    Field::Shell,
                                )?)
                            }
                            "working_dir" => drop(
                                &ek.origin,
                                format!("{short}.exec.working_dir"),
                                "kelpie runs an exec probe in the program's directory",
                            ),
                            other => drop(
                                &ek.origin,
                                format!("{short}.exec.{other}"),
                                "not a process-compose key kelpie import knows",
                            ),
                        }
                    }
                    let command = command.ok_or_else(|| {
                        ImportError::data(v.origin.clone(), format!("{w}: has no command"))
                    })?;
                    // Probes run under process-compose's default shell, not `shell:`.
                    let mut argv: Vec<String> =
                        DEFAULT_SHELL.iter().map(|s| s.to_string()).collect();
                    argv.push(command);
                    if target.replace(ProbeTarget::Exec(argv)).is_some() {
                        return Err(ImportError::data(
                            k.origin.clone(),
                            format!("{what}: exec and http_get cannot both be set"),
                        ));
                    }
                }
                "http_get" => {
                    let t = self.http_get(v, &w, &short, vars, notes, drop)?;
                    if target.replace(t).is_some() {
                        return Err(ImportError::data(
                            k.origin.clone(),
                            format!("{what}: exec and http_get cannot both be set"),
                        ));
                    }
                }
                "initial_delay_seconds" => probe.initial_delay = secs(v, &w)?,
                "period_seconds" => {
                    if v.uint(&w)? >= 1 {
                        probe.interval = secs(v, &w)?;
                    }
                }
                "timeout_seconds" => {
                    if v.uint(&w)? >= 1 {
                        probe.timeout = secs(v, &w)?;
                    }
                }
                "success_threshold" => {
                    let n = v.uint(&w)?;
                    if n >= 1 {
                        probe.success_threshold = Some(n);
                    }
                }
                "failure_threshold" => {
                    let n = v.uint(&w)?;
                    if n >= 1 {
                        probe.failure_threshold = Some(n);
                    }
                }
                other => drop(
                    &k.origin,
                    format!("{short}.{other}"),
                    "not a process-compose key kelpie import knows",
                ),
            }
        }
        probe.target = target.ok_or_else(|| {
            ImportError::data(
                node.origin.clone(),
                format!("{what}: needs exec or http_get"),
            )
        })?;
        Ok(probe)
    }

    fn http_get(
        &self,
        node: &Node,
        what: &str,
        short: &str,
        vars: &BTreeMap<String, String>,
        notes: &mut Vec<String>,
        drop: &mut impl FnMut(&Origin, String, &str),
    ) -> Result<ProbeTarget, ImportError> {
        let mut host = "127.0.0.1".to_string();
        let mut scheme = "http".to_string();
        let mut path = "/".to_string();
        let mut port = None;
        for (k, v) in node.map(what)? {
            let w = format!("{what}.{}", k.name);
            match k.name.as_str() {
                "host" => host = self.text(v, &w, vars, Field::Plain)?,
                "scheme" => scheme = self.text(v, &w, vars, Field::Plain)?.to_ascii_lowercase(),
                "path" => path = self.text(v, &w, vars, Field::Plain)?,
                "port" | "num_port" => {
                    let text = self.text(v, &w, vars, Field::Plain)?;
                    let valid = text.contains("${KELPIE_INSTANCE}")
                        || text.parse::<u16>().is_ok_and(|n| n > 0);
                    if !valid {
                        return Err(ImportError::data(
                            v.origin.clone(),
                            format!("{w}: expected a port number (1 to 65535), found {text:?}"),
                        ));
                    }
                    port = Some(text);
                }
                "status_code" => {
                    if v.uint(&w)? != 200 {
                        drop(
                            &k.origin,
                            format!("{short}.http_get.status_code"),
                            "kelpie's http probe passes on any 2xx or 3xx status",
                        );
                    }
                }
                "headers" => drop(
                    &k.origin,
                    format!("{short}.http_get.headers"),
                    "kelpie's http probe sends no extra headers",
                ),
                other => drop(
                    &k.origin,
                    format!("{short}.http_get.{other}"),
                    "not a process-compose key kelpie import knows",
                ),
            }
        }
        if host.trim().is_empty() {
            host = "127.0.0.1".into();
        }
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        match scheme.as_str() {
            "http" | "" => {
                let port = port.unwrap_or_else(|| "80".into());
                Ok(ProbeTarget::Http(format!("http://{host}:{port}{path}")))
            }
            "https" => {
                let port = port.unwrap_or_else(|| "443".into());
                notes.push(format!("{short}: kelpie's http probe speaks plain HTTP, so the https check of {path} became a TCP connect to {host}:{port}"));
                Ok(ProbeTarget::Tcp(format!("{host}:{port}")))
            }
            other => Err(ImportError::data(
                node.origin.clone(),
                format!("{what}.scheme: {other:?} is not http or https"),
            )),
        }
    }
}
