//! Writing a definition back to `mesg.yml`: `mesg service init` writes new files with it,
//! and [`ServiceDefinition::validate`] re-reads a definition built in code through it.

use super::{ContainerSpec, ServiceDefinition};
use crate::schema::ParamMap;

impl ServiceDefinition {
    /// Render back to `mesg.yml` (used for `service init` and to re-validate).
    pub fn to_yaml(&self) -> String {
        let mut out = String::new();
        let q = |s: &str| serde_json::to_string(s).expect("string");
        out.push_str(&format!("name: {}\n", q(&self.name)));
        if let Some(s) = &self.sid {
            out.push_str(&format!("sid: {}\n", q(s)));
        }
        if let Some(s) = &self.description {
            out.push_str(&format!("description: {}\n", q(s)));
        }
        if let Some(s) = &self.repository {
            out.push_str(&format!("repository: {}\n", q(s)));
        }
        let container = |out: &mut String, c: &ContainerSpec, indent: &str| {
            if let Some(i) = &c.image {
                out.push_str(&format!("{indent}image: {}\n", q(i)));
            }
            let list = |out: &mut String, key: &str, items: &[String]| {
                if !items.is_empty() {
                    let items: Vec<String> = items.iter().map(|s| q(s)).collect();
                    out.push_str(&format!("{indent}{key}: [{}]\n", items.join(", ")));
                }
            };
            list(out, "volumes", &c.volumes);
            list(out, "volumesFrom", &c.volumes_from);
            let ports: Vec<String> = c.ports.iter().map(|p| p.to_string()).collect();
            list(out, "ports", &ports);
            if let Some(cmd) = &c.command {
                out.push_str(&format!("{indent}command: {}\n", q(cmd)));
            }
            list(out, "args", &c.args);
            let env: Vec<String> = c.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            list(out, "env", &env);
        };
        if self.configuration != ContainerSpec::default() {
            out.push_str("configuration:\n");
            container(&mut out, &self.configuration, "  ");
        }
        if !self.dependencies.is_empty() {
            out.push_str("dependencies:\n");
            for (k, c) in &self.dependencies {
                out.push_str(&format!("  {}:\n", q(k)));
                container(&mut out, c, "    ");
            }
        }
        let named = |out: &mut String, n: &Option<String>, d: &Option<String>, ind: &str| {
            if let Some(n) = n {
                out.push_str(&format!("{ind}name: {}\n", q(n)));
            }
            if let Some(d) = d {
                out.push_str(&format!("{ind}description: {}\n", q(d)));
            }
        };
        fn params(out: &mut String, key: &str, p: &ParamMap, ind: &str) {
            let q = |s: &str| serde_json::to_string(s).expect("string");
            if p.is_empty() {
                return;
            }
            out.push_str(&format!("{ind}{key}:\n"));
            for (k, param) in p {
                out.push_str(&format!("{ind}  {}:\n", q(k)));
                let i2 = format!("{ind}    ");
                if let Some(n) = &param.name {
                    out.push_str(&format!("{i2}name: {}\n", q(n)));
                }
                if let Some(d) = &param.description {
                    out.push_str(&format!("{i2}description: {}\n", q(d)));
                }
                out.push_str(&format!("{i2}type: {}\n", param.kind));
                if param.optional {
                    out.push_str(&format!("{i2}optional: true\n"));
                }
                if param.repeated {
                    out.push_str(&format!("{i2}repeated: true\n"));
                }
                if let Some(o) = &param.object {
                    if o.is_empty() {
                        out.push_str(&format!("{i2}object: {{}}\n"));
                    } else {
                        params(out, "object", o, &i2);
                    }
                }
            }
        }
        if !self.tasks.is_empty() {
            out.push_str("tasks:\n");
            for (k, t) in &self.tasks {
                out.push_str(&format!("  {}:\n", q(k)));
                named(&mut out, &t.name, &t.description, "    ");
                if let Some(ms) = t.timeout_ms {
                    out.push_str(&format!("    timeout: {ms}ms\n"));
                }
                if let Some(p) = t.price {
                    out.push_str(&format!(
                        "    price: {{call: {}, per_ms: {}, per_kib: {}}}\n",
                        p.call, p.per_ms, p.per_kib
                    ));
                }
                if t.deterministic {
                    out.push_str("    deterministic: true\n");
                }
                if let Some(v) = t.verify {
                    out.push_str(&format!(
                        "    verify: {{replicas: {}, quorum: {}, max_total: {}}}\n",
                        v.replicas, v.quorum, v.max_total
                    ));
                }
                params(&mut out, "inputs", &t.inputs, "    ");
                params(&mut out, "outputs", &t.outputs, "    ");
            }
        }
        if let Some(e) = &self.economy {
            out.push_str(&format!(
                "economy:\n  publisher_share_bps: {}\n",
                e.publisher_share_bps
            ));
        }
        if !self.events.is_empty() {
            out.push_str("events:\n");
            for (k, e) in &self.events {
                out.push_str(&format!("  {}:\n", q(k)));
                named(&mut out, &e.name, &e.description, "    ");
                params(&mut out, "data", &e.data, "    ");
            }
        }
        out
    }
}
