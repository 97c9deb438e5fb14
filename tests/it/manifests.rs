//! The Kubernetes manifests (`manifests/`) and the `Dockerfile` agree with the code: the
//! probes hit real routes on the port the server listens on, every environment variable
//! they set is one the code reads, every secret has its key in the Secret example, and the
//! pod gets more time to stop than the server takes. Rendered by `kubectl kustomize` when
//! kubectl is on the PATH; otherwise the files each kustomization lists are read as they
//! are (patches and generators then unapplied, and checked as text).

use greenlight::policy::Policy;
use serde::Deserialize;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: impl AsRef<Path>) -> String {
    let path = root().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every document of a YAML text, as JSON (empty documents left out).
fn documents(text: &str, what: &str) -> Vec<Value> {
    yaml_serde::Deserializer::from_str(text)
        .map(|doc| {
            let yaml = yaml_serde::Value::deserialize(doc)
                .unwrap_or_else(|e| panic!("{what} is not valid YAML: {e}"));
            serde_json::to_value(yaml).unwrap_or_else(|e| panic!("{what}: {e}"))
        })
        .filter(|v| !v.is_null())
        .collect()
}

/// What the code says: the variables it reads, which of them are secrets, the default
/// shutdown timeout, and the paths the router serves.
struct Code {
    env: BTreeSet<String>,
    secret_env: BTreeSet<String>,
    shutdown_timeout_default: u64,
    routes: BTreeSet<String>,
}

/// The `#[arg(...)]` attributes of a file, each as one string.
fn arg_attributes(src: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = src;
    while let Some(at) = rest.find("#[arg(") {
        let body = &rest[at + "#[arg(".len()..];
        let (mut depth, mut quoted, mut end) = (1, false, body.len());
        for (i, c) in body.char_indices() {
            match c {
                '"' => quoted = !quoted,
                '(' if !quoted => depth += 1,
                ')' if !quoted => {
                    depth -= 1;
                    if depth == 0 {
                        end = i;
                        break;
                    }
                }
                _ => {}
            }
        }
        out.push(&body[..end]);
        rest = &body[end..];
    }
    out
}

/// The value of `key = "..."` or `key = N` in an attribute.
fn attribute_value<'a>(attr: &'a str, key: &str) -> Option<&'a str> {
    let pattern = format!("{key} = ");
    let at = attr
        .match_indices(&pattern)
        .map(|(i, _)| i)
        // `env = ` and not the end of `hide_env = ` or the like.
        .find(|&i| i == 0 || !attr[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_'))?;
    let value = &attr[at + pattern.len()..];
    match value.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next(),
        None => value.split(|c: char| c == ',' || c.is_whitespace()).next(),
    }
}

fn code() -> Code {
    let mut env = BTreeSet::new();
    let mut secret_env = BTreeSet::new();
    let mut shutdown_timeout_default = None;
    // Settings, and `GREENLIGHT_LOG_FORMAT` of `serve`.
    for file in ["src/config.rs", "src/cli/mod.rs"] {
        for attr in arg_attributes(&read(file)) {
            let Some(name) = attribute_value(attr, "env") else {
                continue;
            };
            env.insert(name.to_owned());
            if attr.contains("hide_env_values = true") {
                secret_env.insert(name.to_owned());
            }
            if name == "GREENLIGHT_SHUTDOWN_TIMEOUT" {
                shutdown_timeout_default = attribute_value(attr, "default_value_t")
                    .map(|v| v.replace('_', "").parse().unwrap());
            }
        }
    }
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(root().join("src/http")).unwrap() {
        let src = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        // Plain axum routes, and the documented ones registered with `routes!`, whose path
        // is the `path = "…"` of their `#[utoipa::path]`.
        for needle in [".route(\"", "path = \""] {
            for (at, _) in src.match_indices(needle) {
                let path = src[at + needle.len()..].split('"').next().unwrap();
                routes.insert(path.to_owned());
            }
        }
    }
    assert!(env.contains("GREENLIGHT_LISTEN"), "{env:?}");
    assert!(secret_env.contains("REDIS_URL"), "{secret_env:?}");
    assert!(routes.contains("/healthz"), "{routes:?}");
    Code {
        env,
        secret_env,
        shutdown_timeout_default: shutdown_timeout_default
            .expect("GREENLIGHT_SHUTDOWN_TIMEOUT has a default"),
        routes,
    }
}

fn kubectl() -> bool {
    Command::new("kubectl")
        .args(["version", "--client"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The resources of the kustomization in `dir`, and whether kustomize rendered them.
fn render(dir: &str) -> (Vec<Value>, bool) {
    if kubectl() {
        let out = Command::new("kubectl")
            .arg("kustomize")
            .arg(root().join(dir))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl kustomize {dir}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        return (
            documents(&text, &format!("kustomize output of {dir}")),
            true,
        );
    }
    (listed_resources(&root().join(dir)), false)
}

/// Without kubectl: the files a kustomization lists, and those of the bases it names.
fn listed_resources(dir: &Path) -> Vec<Value> {
    let file = dir.join("kustomization.yaml");
    let text = std::fs::read_to_string(&file).unwrap();
    let kustomization = &documents(&text, &file.display().to_string())[0];
    let mut out = Vec::new();
    for resource in kustomization["resources"].as_array().unwrap() {
        let path = dir.join(resource.as_str().unwrap());
        if path.is_dir() {
            out.extend(listed_resources(&path));
        } else {
            let text = std::fs::read_to_string(&path).unwrap();
            out.extend(documents(&text, &path.display().to_string()));
        }
    }
    out
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    try_find(docs, kind, name).unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn try_find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// `selector` (a label map) selects pods labelled `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a label selector");
    !selector.is_empty() && selector.iter().all(|(k, v)| &labels[k] == v)
}

/// The Deployment's `greenlight` container.
fn container(deployment: &Value) -> &Value {
    deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "greenlight")
        .expect("a container named greenlight")
}

fn env_of(container: &Value) -> BTreeMap<String, Value> {
    container["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (str_of(&e["name"]).to_owned(), e["value"].clone()))
        .collect()
}

fn http_port(container: &Value) -> u64 {
    container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .expect("a port named http")["containerPort"]
        .as_u64()
        .unwrap()
}

/// A port reference (a number, or the name `http`) means the HTTP port.
fn is_http_port(port: &Value, http: u64) -> bool {
    port == "http" || port.as_u64() == Some(http)
}

/// The policy in the ConfigMap, parsed as the server parses it.
fn configmap_policy(docs: &[Value]) -> (Policy, String) {
    let cm = find(docs, "ConfigMap", "greenlight-policy");
    let text = str_of(&cm["data"]["policy.toml"]);
    let policy = Policy::parse(text).unwrap_or_else(|e| panic!("the ConfigMap's policy: {e}"));
    (policy, text.to_owned())
}

fn client_secrets(policy: &Policy) -> BTreeSet<String> {
    policy
        .clients
        .iter()
        .map(|c| c.secret_env.clone())
        .collect()
}

#[test]
fn the_base_matches_the_code() {
    let code = code();
    let (docs, _) = render("manifests/base");
    let deployment = find(&docs, "Deployment", "greenlight");
    let spec = &deployment["spec"];
    let pod = &spec["template"]["spec"];
    let labels = &spec["template"]["metadata"]["labels"];
    let c = container(deployment);
    let port = http_port(c);
    let env = env_of(c);
    let (policy, _) = configmap_policy(&docs);
    let clients = client_secrets(&policy);

    assert!(spec["replicas"].as_u64().unwrap() >= 2, "2+ replicas");
    assert!(selects(&spec["selector"]["matchLabels"], labels));

    // The server listens where the probes, the Service and the NetworkPolicy look.
    assert_eq!(env["GREENLIGHT_LISTEN"], format!("0.0.0.0:{port}"));
    assert_eq!(env["GREENLIGHT_LOG_FORMAT"], "json");
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], path, "{probe}");
        assert!(code.routes.contains(path), "{path} is not a route");
        assert!(
            is_http_port(&get["port"], port),
            "{probe} port {}",
            get["port"]
        );
    }

    // Every variable set is one the code reads: a setting, or a client's secret.
    for name in env.keys() {
        assert!(
            code.env.contains(name) || clients.contains(name),
            "{name} is set in the Deployment but nothing reads it"
        );
    }
    for name in code.secret_env.iter().chain(&clients) {
        assert!(
            !env.contains_key(name),
            "{name} is a secret: it belongs in the Secret, not in the Deployment"
        );
    }
    let from = c["envFrom"].as_array().unwrap();
    assert!(
        from.iter().any(|f| f["secretRef"]["name"] == "greenlight"),
        "the secrets come from the Secret `greenlight`"
    );

    // The policy file is the ConfigMap's, mounted where GREENLIGHT_POLICY says.
    let policy_path = Path::new(str_of(&env["GREENLIGHT_POLICY"]));
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| Path::new(str_of(&m["mountPath"])) == policy_path.parent().unwrap())
        .expect("the policy directory is mounted");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    assert_eq!(volume["configMap"]["name"], "greenlight-policy");
    assert_eq!(
        policy_path.file_name().unwrap().to_str().unwrap(),
        "policy.toml"
    );

    // The pod has more time to stop than the server takes (after preStop).
    let shutdown = env
        .get("GREENLIGHT_SHUTDOWN_TIMEOUT")
        .map(|v| str_of(v).parse().unwrap())
        .unwrap_or(code.shutdown_timeout_default);
    let pre_stop = c["lifecycle"]["preStop"]["sleep"]["seconds"]
        .as_u64()
        .unwrap_or(0);
    let grace = pod["terminationGracePeriodSeconds"].as_u64().unwrap();
    assert!(
        grace > pre_stop + shutdown,
        "terminationGracePeriodSeconds {grace} <= preStop {pre_stop} + shutdown {shutdown}"
    );

    // Locked down.
    let sc = &c["securityContext"];
    assert!(pod["securityContext"]["runAsNonRoot"] == true || sc["runAsNonRoot"] == true);
    assert_ne!(pod["securityContext"]["runAsUser"], 0);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert!(
        sc["capabilities"]["drop"]
            .as_array()
            .unwrap()
            .contains(&"ALL".into())
    );
    for kind in ["requests", "limits"] {
        assert!(c["resources"][kind]["memory"].is_string(), "{kind}.memory");
    }
    assert!(c["resources"]["requests"]["cpu"].is_string());

    let service = find(&docs, "Service", "greenlight");
    assert!(selects(&service["spec"]["selector"], labels));
    let service_port = &service["spec"]["ports"][0];
    assert!(is_http_port(&service_port["targetPort"], port));

    let netpol = find(&docs, "NetworkPolicy", "greenlight");
    assert!(selects(
        &netpol["spec"]["podSelector"]["matchLabels"],
        labels
    ));
    let types = &netpol["spec"]["policyTypes"];
    assert!(types.as_array().unwrap().contains(&"Ingress".into()));
    assert!(types.as_array().unwrap().contains(&"Egress".into()));
    let ingress_ports: Vec<&Value> = netpol["spec"]["ingress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().expect("ingress limited to ports"))
        .collect();
    assert!(!ingress_ports.is_empty());
    for p in ingress_ports {
        assert!(is_http_port(&p["port"], port), "ingress to {p}");
    }
    let egress: BTreeSet<(u64, String)> = netpol["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["ports"].as_array().unwrap())
        .map(|p| {
            let protocol = p["protocol"].as_str().unwrap_or("TCP").to_owned();
            (p["port"].as_u64().unwrap(), protocol)
        })
        .collect();
    for needed in [(53, "UDP"), (53, "TCP"), (443, "TCP"), (6379, "TCP")] {
        assert!(
            egress.contains(&(needed.0, needed.1.to_owned())),
            "egress to {needed:?}"
        );
    }

    let pdb = find(&docs, "PodDisruptionBudget", "greenlight");
    assert!(selects(&pdb["spec"]["selector"]["matchLabels"], labels));
    let hpa = find(&docs, "HorizontalPodAutoscaler", "greenlight");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["kind"], "Deployment");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "greenlight");
    assert!(hpa["spec"]["minReplicas"].as_u64().unwrap() >= 2);

    let monitor = find(&docs, "ServiceMonitor", "greenlight");
    let endpoint = &monitor["spec"]["endpoints"][0];
    assert_eq!(endpoint["port"], service_port["name"]);
    let metrics = str_of(&endpoint["path"]);
    assert!(code.routes.contains(metrics), "{metrics} is not a route");
    assert!(selects(
        &monitor["spec"]["selector"]["matchLabels"],
        &service["metadata"]["labels"]
    ));
}

/// The Secret example has a key for every secret the code reads and every client of the
/// ConfigMap's policy, and nothing else.
#[test]
fn the_secret_example_lists_every_secret() {
    let code = code();
    let (docs, _) = render("manifests/base");
    let (policy, _) = configmap_policy(&docs);
    let example = documents(
        &read("manifests/base/secret.example.yaml"),
        "secret.example.yaml",
    );
    assert_eq!(example.len(), 1);
    let secret = &example[0];
    assert_eq!(secret["kind"], "Secret");
    assert_eq!(secret["metadata"]["name"], "greenlight");
    let keys: BTreeSet<String> = ["stringData", "data"]
        .iter()
        .filter_map(|field| secret[field].as_object())
        .flat_map(|m| m.keys().cloned())
        .collect();
    let expected: BTreeSet<String> = code
        .secret_env
        .iter()
        .cloned()
        .chain(client_secrets(&policy))
        .collect();
    assert_eq!(keys, expected, "secret.example.yaml keys");
    // Not applied with the base, so that applying it never overwrites real secrets.
    assert!(try_find(&docs, "Secret", "greenlight").is_none());
}

#[test]
fn the_dev_redis_overlay_points_at_its_redis() {
    let (docs, rendered) = render("manifests/overlays/dev-redis");
    let redis = find(&docs, "Deployment", "greenlight-redis");
    let redis_service = find(&docs, "Service", "greenlight-redis");
    assert!(selects(
        &redis_service["spec"]["selector"],
        &redis["spec"]["template"]["metadata"]["labels"]
    ));
    let redis_port = redis_service["spec"]["ports"][0]["port"].as_u64().unwrap();
    let url = format!("redis://greenlight-redis:{redis_port}");
    let (policy, _) = configmap_policy(&docs);
    if !rendered {
        // Patches and generators are not applied without kustomize: check their text.
        let text = read("manifests/overlays/dev-redis/kustomization.yaml");
        assert!(text.contains("name: REDIS_URL"), "{text}");
        assert!(text.contains(&format!("value: {url}")), "{text}");
        for name in client_secrets(&policy) {
            assert!(text.contains(&format!("- {name}=whsec_")), "{name}");
        }
        return;
    }
    let deployment = find(&docs, "Deployment", "greenlight");
    let c = container(deployment);
    assert_eq!(env_of(c)["REDIS_URL"], url);
    // The generated Secret, under its hashed name, is the one the pods read.
    let secret_ref = str_of(&c["envFrom"][0]["secretRef"]["name"]);
    assert!(secret_ref.starts_with("greenlight-"), "{secret_ref}");
    let secret = find(&docs, "Secret", secret_ref);
    for name in client_secrets(&policy) {
        assert!(
            secret["data"][&name].is_string(),
            "{name} in the dev Secret"
        );
    }
    assert!(
        docs.iter().all(|d| d["kind"] != "ServiceMonitor"),
        "no ServiceMonitor without the Prometheus Operator"
    );
}

/// Every YAML file under manifests/ parses.
#[test]
fn every_manifest_is_valid_yaml() {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(&root().join("manifests"), &mut files);
    assert!(files.len() >= 12, "{files:?}");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            !documents(&text, &file.display().to_string()).is_empty(),
            "{} is empty",
            file.display()
        );
    }
}

/// The Dockerfile's instructions, continuation lines joined, comments left out.
fn dockerfile() -> Vec<(String, String)> {
    let text = read("Dockerfile");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || (line.is_empty() && current.is_empty()) {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => current.push_str(part),
            None => {
                current.push_str(line);
                let (instruction, args) = current.split_once(' ').unwrap_or((&current, ""));
                out.push((instruction.to_uppercase(), args.trim().to_owned()));
                current.clear();
            }
        }
    }
    out
}

#[test]
fn the_dockerfile_matches_the_code_and_the_manifests() {
    let code = code();
    let (docs, _) = render("manifests/base");
    let port = http_port(container(find(&docs, "Deployment", "greenlight")));
    let instructions = dockerfile();
    let all = |name: &str| -> Vec<&str> {
        instructions
            .iter()
            .filter(|(i, _)| i == name)
            .map(|(_, a)| a.as_str())
            .collect()
    };

    let from = all("FROM");
    assert!(from.len() >= 2, "multi-stage: {from:?}");
    assert!(
        all("RUN")
            .iter()
            .any(|r| r.contains("cargo build --release --locked")),
        "a locked release build"
    );
    assert_eq!(all("EXPOSE"), [port.to_string()]);
    let env: BTreeMap<&str, &str> = all("ENV")
        .iter()
        .flat_map(|a| a.split_whitespace())
        .map(|kv| kv.split_once('=').expect("ENV KEY=value"))
        .collect();
    assert_eq!(env["GREENLIGHT_LISTEN"], format!("0.0.0.0:{port}"));
    assert_eq!(env["GREENLIGHT_LOG_FORMAT"], "json");
    for name in env.keys() {
        assert!(code.env.contains(*name), "{name} is not read by the code");
    }
    assert_eq!(all("ENTRYPOINT"), [r#"["greenlight"]"#]);
    assert_eq!(all("CMD"), [r#"["serve"]"#]);
    let user = *all("USER").last().expect("a USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid.parse::<u32>().is_ok_and(|u| u != 0),
        "a numeric non-root USER: {user}"
    );
    assert!(all("HEALTHCHECK").is_empty(), "the probes do that");

    let ignore = read(".dockerignore");
    for needed in [".git", "target"] {
        assert!(
            ignore
                .lines()
                .any(|l| l.trim().trim_end_matches('/') == needed),
            ".dockerignore leaves out {needed}"
        );
    }
}
