//! The OpenAPI document matches the routes; operator endpoints; keys; and the
//! authorization matrix over every route that takes an object id.

mod support;

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::{Market, OPERATOR_KEY};

/// Every (path, method) of the OpenAPI document with its operation.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    doc["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, ops)| {
            ops.as_object()
                .unwrap()
                .iter()
                .filter(|(method, _)| *method != "parameters")
                .map(move |(method, op)| (path.clone(), method.clone(), op.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_committed_one_and_describes_every_answer() {
    let m = Market::start(|_| {}).await;
    let served = m
        .http
        .get(format!("{}/api/v1/openapi.json", m.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let committed_path = gigaspot_tests::repo_root().join("docs/openapi.json");
    let committed = std::fs::read_to_string(&committed_path).unwrap_or_default();
    if committed != served && std::env::var_os("GIGASPOT_WRITE_OPENAPI").is_some() {
        std::fs::write(&committed_path, &served).unwrap();
    }
    assert!(
        committed == served,
        "docs/openapi.json is not what the server serves; regenerate it with \
         `cargo run -p gigaspot-server -- openapi > docs/openapi.json` \
         (or run this test with GIGASPOT_WRITE_OPENAPI=1)"
    );
    let doc: Value = serde_json::from_str(&served).unwrap();
    assert_eq!(doc["openapi"], json!("3.1.0"));
    let ops = operations(&doc);
    assert!(ops.len() >= 49, "{} operations", ops.len());
    for (path, method, op) in &ops {
        let responses = op["responses"].as_object().unwrap();
        // A success with its schema (or 204), and the error shape.
        let success = responses
            .iter()
            .filter(|(status, _)| status.starts_with('2'))
            .collect::<Vec<_>>();
        assert!(!success.is_empty(), "{method} {path}: no success response");
        for (status, response) in success {
            assert!(
                status == "204"
                    || response["content"]
                        .as_object()
                        .is_some_and(|c| c.values().all(|m| m.get("schema").is_some())),
                "{method} {path} {status}: no schema"
            );
        }
        let public_surface =
            path == "/api/v1/health" || path == "/api/v1/openapi.json" || path == "/metrics";
        assert!(
            public_surface || responses.contains_key("4XX"),
            "{method} {path}: the error responses are not described"
        );
        // Bodies are described where the handler reads one.
        if ["post", "put", "patch"].contains(&method.as_str())
            && !path.contains("/activate")
            && !path.contains("/rollback")
            && !path.contains("/shadow")
            && !path.ends_with("/keys")
        {
            assert!(
                op["requestBody"].is_object(),
                "{method} {path}: no request body"
            );
        }
        // Every documented operation is routed (never the router's 404 or 405).
        let concrete = path
            .replace("{id}", "1")
            .replace("{digest}", "sha256:00")
            .replace("{name}", "v")
            .replace("{file}", "gigaspot_1.json");
        let resp = m
            .http
            .request(
                method.to_uppercase().parse().unwrap(),
                format!("{}{concrete}", m.base),
            )
            .send()
            .await
            .unwrap();
        let status = resp.status();
        let body = resp.text().await.unwrap();
        assert!(
            status != StatusCode::METHOD_NOT_ALLOWED && !body.contains("no such route"),
            "{method} {path} is documented but not routed: {status} {body}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_upload_activate_roll_back_and_order_plugins() {
    let m = Market::start(|_| {}).await;
    let (status, ppw) = m.upload_plugin(OPERATOR_KEY, "price-per-watt", "").await;
    assert_eq!(status, StatusCode::CREATED, "{ppw}");
    let ppw_digest = ppw["digest"].as_str().unwrap().to_owned();
    let (_, net) = m.upload_plugin(OPERATOR_KEY, "net-profit", "").await;
    let net_digest = net["digest"].as_str().unwrap().to_owned();
    for digest in [&ppw_digest, &net_digest] {
        let (status, body) = m
            .call(
                "POST",
                &format!("/api/v1/plugins/{digest}/activate"),
                Some(OPERATOR_KEY),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    let (_, health) = m.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(health["strategy_digest"], json!(net_digest));
    let (status, body) = m
        .call(
            "POST",
            "/api/v1/plugins/strategy/rollback",
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(
        (status, body["active_strategy"]["digest"].clone()),
        (StatusCode::OK, json!(ppw_digest))
    );

    // A clearing through the WASM strategy shows its fuel in the metrics.
    let (_, machine, _) = m.machine().await;
    let (_, client) = m.funded_client("c", 100.0).await;
    let (status, _) = m.call("POST", "/api/v1/bids", Some(&client), Some(json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]}))).await;
    assert_eq!(status, StatusCode::CREATED);
    m.tick(0).await;
    let metrics = m.scrape().await;
    let fuel_line = format!(
        "gigaspot_plugin_fuel_total{{plugin=\"price-per-watt\",digest=\"{ppw_digest}\",role=\"strategy\"}} "
    );
    let fuel: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(&fuel_line))
        .unwrap_or_else(|| panic!("no fuel line in {metrics}"))
        .parse()
        .unwrap();
    assert!(fuel > 0);

    // Garbage is not a plugin.
    let resp = m
        .http
        .post(format!("{}/api/v1/plugins", m.base))
        .bearer_auth(OPERATOR_KEY)
        .body(b"garbage".to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNPROCESSABLE_ENTITY);

    // Validators: install two, reorder them.
    let (_, policy) = m
        .upload_plugin(OPERATOR_KEY, "policy-validator", "image-deny = *:latest")
        .await;
    let (_, hostile) = m
        .upload_plugin(OPERATOR_KEY, "hostile-validator", "reject-all")
        .await;
    for v in [&policy, &hostile] {
        let (status, _) = m
            .call(
                "POST",
                &format!("/api/v1/plugins/{}/activate", v["digest"].as_str().unwrap()),
                Some(OPERATOR_KEY),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
    }
    let (status, body) = m
        .call(
            "PUT",
            "/api/v1/plugins/validators/order",
            Some(OPERATOR_KEY),
            Some(json!({"names": ["hostile-validator", "policy-validator"]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["validators"][0]["name"], json!("hostile-validator"));
    let (status, body) = m
        .call(
            "PUT",
            "/api/v1/plugins/validators/order",
            Some(OPERATOR_KEY),
            Some(json!({"names": ["policy-validator"]})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("names"))
    );
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/plugins/validators/policy-validator/rollback",
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing to roll back to");

    // The list shows digests, roles and fault counts.
    let (_, list) = m
        .call("GET", "/api/v1/plugins", Some(OPERATOR_KEY), None)
        .await;
    let versions = list["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 4);
    let ppw_view = versions
        .iter()
        .find(|v| v["digest"] == json!(ppw_digest))
        .unwrap();
    assert_eq!(ppw_view["role"], json!("strategy"));
    assert_eq!(ppw_view["faults"]["trap"], json!(0));

    // A plugin that wants the network is refused, naming the import; nothing is stored.
    let (status, body) = m.upload_plugin(OPERATOR_KEY, "wants-sockets", "").await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["reason"]
            .as_str()
            .unwrap()
            .contains("wasi:sockets/"),
        "{body}"
    );
    let (status, body) = m
        .upload_plugin(OPERATOR_KEY, "policy-validator", "colour = blue")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (_, list) = m
        .call("GET", "/api/v1/plugins", Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(list["versions"].as_array().unwrap().len(), 4);

    // Parameters and the GPU table.
    let (status, params) = m
        .call(
            "PUT",
            "/api/v1/params",
            Some(OPERATOR_KEY),
            Some(json!({"billing_interval_s": 120, "fee_bps": 300, "clore_usd": 0.05})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{params}");
    let (status, body) = m
        .call(
            "PUT",
            "/api/v1/params",
            Some(OPERATOR_KEY),
            Some(json!({"billing_interval_s": 1, "fee_bps": 300, "clore_usd": 0.05})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (StatusCode::BAD_REQUEST, json!("billing_interval_s"))
    );
    let (_, table) = m
        .call("GET", "/api/v1/gpu-table", Some(OPERATOR_KEY), None)
        .await;
    assert!(table["models"]["NVIDIA GeForce RTX 4090"].is_object());
    let mut inverted = table.clone();
    inverted["models"]["NVIDIA L40S"]["core_lock"] = json!({"min": 2000, "max": 300});
    let (status, body) = m
        .call(
            "PUT",
            "/api/v1/gpu-table",
            Some(OPERATOR_KEY),
            Some(inverted),
        )
        .await;
    assert_eq!(
        (status, body["error"]["field"].clone()),
        (
            StatusCode::BAD_REQUEST,
            json!("models.NVIDIA L40S.core_lock")
        )
    );
    let (_, unchanged) = m
        .call("GET", "/api/v1/gpu-table", Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(unchanged, table, "a refused table changes nothing");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_can_be_added_and_revoked() {
    let m = Market::start(|_| {}).await;
    let (_, first) = m.register("c", &["client"]).await;
    let (status, body) = m.call("POST", "/api/v1/keys", Some(&first), None).await;
    assert_eq!(status, StatusCode::CREATED);
    let second = body["api_key"].as_str().unwrap().to_owned();
    assert_eq!(
        m.call("GET", "/api/v1/accounts/me", Some(&second), None)
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        m.call("DELETE", "/api/v1/keys/current", Some(&first), None)
            .await
            .0,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        m.call("GET", "/api/v1/accounts/me", Some(&first), None)
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        m.call("GET", "/api/v1/accounts/me", Some(&second), None)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_authorization_matrix_holds_for_every_route_with_an_object_id() {
    let m = Market::start(|_| {}).await;
    let (host, machine, _) = m.machine().await;
    let (_, owner) = m.funded_client("owner", 100.0).await;
    let (_, other) = m.funded_client("other", 100.0).await;
    let (_, revoked) = m.funded_client("revoked", 0.0).await;
    m.call("DELETE", "/api/v1/keys/current", Some(&revoked), None)
        .await;
    let bid = |_: ()| json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]});
    let (_, created) = m
        .call("POST", "/api/v1/bids", Some(&owner), Some(bid(())))
        .await;
    let id = created["id"].as_u64().unwrap();
    m.tick(0).await;
    let (_, ppw) = m.upload_plugin(OPERATOR_KEY, "price-per-watt", "").await;
    let digest = ppw["digest"].as_str().unwrap().to_owned();

    let edit = json!({"price": 11.0, "oc": [{"pl": 200}, {"pl": 200}, {"pl": 200}, {"pl": 200}]});
    let ok = StatusCode::OK;
    let (nf, fb, ua) = (
        StatusCode::NOT_FOUND,
        StatusCode::FORBIDDEN,
        StatusCode::UNAUTHORIZED,
    );
    // (method, path, body, [owner, other client, host, operator, anonymous, revoked])
    let matrix: Vec<(&str, String, Option<Value>, [StatusCode; 6])> = vec![
        (
            "GET",
            format!("/api/v1/bids/{id}"),
            None,
            [ok, nf, ok, ok, ua, ua],
        ),
        (
            "PATCH",
            format!("/api/v1/bids/{id}"),
            Some(edit.clone()),
            [ok, nf, fb, fb, ua, ua],
        ),
        (
            "GET",
            format!("/api/v1/machines/{machine}"),
            None,
            [ok, ok, ok, ok, ok, ok],
        ),
        (
            "PATCH",
            format!("/api/v1/machines/{machine}"),
            Some(json!({"energy_price": 0.0})),
            [fb, fb, ok, fb, ua, ua],
        ),
        (
            "GET",
            format!("/api/v1/machines/{machine}/decision"),
            None,
            [ok, ok, ok, ok, ua, ua],
        ),
        (
            "POST",
            format!("/api/v1/plugins/{digest}/activate"),
            None,
            [fb, fb, fb, ok, ua, ua],
        ),
        (
            "POST",
            "/api/v1/plugins/validators/x/rollback".into(),
            None,
            [fb, fb, fb, StatusCode::CONFLICT, ua, ua],
        ),
        (
            "DELETE",
            format!("/api/v1/bids/{id}"),
            None,
            [ok, nf, fb, fb, ua, ua],
        ),
    ];
    let callers: [Option<&str>; 6] = [
        Some(&owner),
        Some(&other),
        Some(&host),
        Some(OPERATOR_KEY),
        None,
        Some(&revoked),
    ];
    let names = [
        "owner",
        "other client",
        "host",
        "operator",
        "anonymous",
        "revoked key",
    ];
    for (method, path, body, expected) in matrix {
        // The owner's row runs last for DELETE so that the others meet a live bid.
        let order: Vec<usize> = if method == "DELETE" {
            vec![1, 2, 3, 4, 5, 0]
        } else {
            (0..6).collect()
        };
        for i in order {
            let (status, answer) = m.call(method, &path, callers[i], body.clone()).await;
            assert_eq!(
                status, expected[i],
                "{method} {path} as {}: {answer}",
                names[i]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_activated_through_the_api_survive_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().join("market");
    let config_dir = dir.clone();
    let m = Market::start(move |c| c.data_dir = config_dir).await;
    let (_, net) = m.upload_plugin(OPERATOR_KEY, "net-profit", "").await;
    let (_, policy) = m
        .upload_plugin(OPERATOR_KEY, "policy-validator", "image-deny = *:latest")
        .await;
    for v in [&net, &policy] {
        let path = format!("/api/v1/plugins/{}/activate", v["digest"].as_str().unwrap());
        assert_eq!(
            m.call("POST", &path, Some(OPERATOR_KEY), None).await.0,
            StatusCode::OK
        );
    }
    m.stop().await;

    let config = gigaspot_server::config::Config {
        data_dir: dir,
        operator_key: Some(OPERATOR_KEY.into()),
        ..Default::default()
    };
    // Open connections end asynchronously after the server stops; wait for the store.
    let mut attempt = 0;
    let state = loop {
        let c = config.clone();
        match tokio::task::spawn_blocking(move || gigaspot_server::serve::prepare(c))
            .await
            .unwrap()
        {
            Ok((state, _)) => break state,
            Err(e) if attempt < 50 && format!("{e:#}").contains("lock") => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e:#}"),
        }
    };
    assert_eq!(
        state.registry.active_strategy().digest,
        net["digest"].as_str().unwrap()
    );
    let validators = state.registry.validators();
    assert_eq!(validators.len(), 1);
    assert_eq!(validators[0].digest, policy["digest"].as_str().unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_strategy_is_a_version_and_validators_can_be_removed() {
    let m = Market::start(|_| {}).await;
    let (status, ppw) = m.upload_plugin(OPERATOR_KEY, "price-per-watt", "").await;
    assert_eq!(status, StatusCode::CREATED, "{ppw}");
    let digest = ppw["digest"].as_str().unwrap().to_owned();
    let post = |path: String| {
        let m = &m;
        async move { m.call("POST", &path, Some(OPERATOR_KEY), None).await }
    };
    let (status, body) = post(format!("/api/v1/plugins/{digest}/activate")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Right after the first activation the roll-back target is the built-in strategy.
    let (status, body) = post("/api/v1/plugins/strategy/rollback".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["active_strategy"]["digest"],
        json!("native:price-per-watt")
    );
    let (_, health) = m.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(health["strategy_digest"], json!("native:price-per-watt"));
    // The built-in strategy can be activated by its digest like any version.
    post(format!("/api/v1/plugins/{digest}/activate")).await;
    let (status, body) = post("/api/v1/plugins/native:price-per-watt/activate".into()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body["active_strategy"]["digest"],
        json!("native:price-per-watt")
    );
    let (_, body) = post("/api/v1/plugins/strategy/rollback".into()).await;
    assert_eq!(body["active_strategy"]["digest"], json!(digest));

    // A validator is installed, then uninstalled; the order then is the empty list.
    let (status, v) = m
        .upload_plugin(OPERATOR_KEY, "policy-validator", "image-deny = bad/*")
        .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let name = v["name"].as_str().unwrap().to_owned();
    let (status, _) = post(format!(
        "/api/v1/plugins/{}/activate",
        v["digest"].as_str().unwrap()
    ))
    .await;
    assert_eq!(status, StatusCode::OK);
    let path = format!("/api/v1/plugins/validators/{name}");
    let (status, body) = m.call("DELETE", &path, Some(OPERATOR_KEY), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["validators"], json!([]));
    let (status, body) = m
        .call(
            "PUT",
            "/api/v1/plugins/validators/order",
            Some(OPERATOR_KEY),
            Some(json!({"names": []})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = m.call("DELETE", &path, Some(OPERATOR_KEY), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Only operators.
    let (_, client) = m.register("c", &["client"]).await;
    let (status, _) = m.call("DELETE", &path, Some(&client), None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_upload_leaves_nothing_in_the_plugin_cache() {
    let m = Market::start(|_| {}).await;
    let (status, body) = m
        .upload_plugin(OPERATOR_KEY, "policy-validator", "nonsense")
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let cache = m.state.config.data_dir.join("plugin-cache");
    let left: Vec<_> = std::fs::read_dir(&cache)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
    // An accepted upload keeps its compiled artefact.
    let (status, _) = m.upload_plugin(OPERATOR_KEY, "policy-validator", "").await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_names_the_strategy_that_answers_not_a_quarantined_one() {
    let m = Market::start(|c| c.plugins.quarantine_after = 1).await;
    let (_, machine, _) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 1000.0).await;
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/bids",
            Some(&key),
            Some(json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let digest = m.install_and_activate("hostile-strategy", "nan").await;
    let (_, health) = m.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(health["strategy_digest"], json!(digest), "{health}");
    // One fault quarantines it: the built-in strategy answers, and health says so.
    m.tick(60).await;
    let (_, health) = m.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(
        health["strategy_digest"],
        json!("native:price-per-watt"),
        "{health}"
    );
    assert_eq!(health["active_strategy"]["digest"], json!(digest));
    assert_eq!(
        health["strategy_chain"][0]["quarantined"],
        json!(true),
        "{health}"
    );
    assert_eq!(health["strategy_chain"][1]["role"], json!("previous"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_version_is_its_component_and_its_configuration() {
    let m = Market::start(|_| {}).await;
    let (_, first) = m
        .upload_plugin(OPERATOR_KEY, "policy-validator", "image-deny = first/*")
        .await;
    let (_, second) = m
        .upload_plugin(OPERATOR_KEY, "policy-validator", "image-deny = second/*")
        .await;
    let (d1, d2) = (
        first["digest"].as_str().unwrap().to_owned(),
        second["digest"].as_str().unwrap().to_owned(),
    );
    // Same component, another configuration: another version, both kept as uploaded.
    assert_ne!(d1, d2);
    assert_eq!(
        d1.split_once("+config:").unwrap().0,
        d2.split_once("+config:").unwrap().0
    );
    let (_, list) = m
        .call("GET", "/api/v1/plugins", Some(OPERATOR_KEY), None)
        .await;
    let configs: Vec<(String, String)> = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["digest"].as_str().unwrap().into(),
                v["config"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert!(
        configs.contains(&(d1.clone(), "image-deny = first/*".into())),
        "{list}"
    );
    assert!(
        configs.contains(&(d2.clone(), "image-deny = second/*".into())),
        "{list}"
    );
    for d in [&d1, &d2] {
        let (status, body) = m
            .call(
                "POST",
                &format!("/api/v1/plugins/{d}/activate"),
                Some(OPERATOR_KEY),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    // Roll back to the first configuration: what runs, what is listed and what a restart
    // runs are all that version.
    let name = first["name"].as_str().unwrap();
    let (status, body) = m
        .call(
            "POST",
            &format!("/api/v1/plugins/validators/{name}/rollback"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["validator"]["digest"], json!(d1));
    let (_, list) = m
        .call("GET", "/api/v1/plugins", Some(OPERATOR_KEY), None)
        .await;
    assert_eq!(list["validators"][0]["digest"], json!(d1), "{list}");
    let dir = m.stop_keeping_data().await;
    let m = Market::start_in(dir, |_| {}).await;
    assert_eq!(m.state.registry.validators()[0].digest, d1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_stored_before_ids_named_their_configuration_are_upgraded_at_start() {
    use gigaspot_store::{ActivePlugins, PluginVersionRecord, SledStore, Store};
    use sha2::Digest;
    let m = Market::start(|_| {}).await;
    let data = m.state.config.data_dir.clone();
    let dir = m.stop_keeping_data().await;
    // A store as the first release wrote it: the version keyed by the component alone.
    let wasm = gigaspot_tests::guest("policy-validator");
    let old = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&wasm)));
    {
        let store = SledStore::open(&data).unwrap();
        store
            .put_plugin_version(&PluginVersionRecord {
                digest: old.clone(),
                name: "policy-validator".into(),
                version: "0.1.0".into(),
                kind: "validator".into(),
                config: "image-deny = old/*".into(),
                installed_at: 1,
                wasm,
            })
            .unwrap();
        store
            .set_active_plugins(&ActivePlugins {
                strategy: None,
                validators: vec![old.clone()],
            })
            .unwrap();
    }
    let m = Market::start_in(dir, |_| {}).await;
    let running = m.state.registry.validators();
    assert_eq!(running.len(), 1);
    assert!(
        running[0].digest.starts_with(&format!("{old}+config:")),
        "{running:?}"
    );
    let (_, list) = m
        .call("GET", "/api/v1/plugins", Some(OPERATOR_KEY), None)
        .await;
    let versions = list["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 1, "{list}");
    assert_eq!(versions[0]["digest"], json!(running[0].digest));
}

async fn post_ok(m: &Market, path: &str) -> Value {
    let (status, body) = m.call("POST", path, Some(OPERATOR_KEY), None).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_resumes_the_active_previous_and_quarantined_versions() {
    // 1. Active and previous versions: the roll-back target survives.
    let m = Market::start(|c| c.plugins.quarantine_after = 1).await;
    let (_, ppw) = m.upload_plugin(OPERATOR_KEY, "price-per-watt", "").await;
    let (_, net) = m.upload_plugin(OPERATOR_KEY, "net-profit", "").await;
    let (ppw, net) = (
        ppw["digest"].as_str().unwrap().to_owned(),
        net["digest"].as_str().unwrap().to_owned(),
    );
    post_ok(&m, &format!("/api/v1/plugins/{ppw}/activate")).await;
    post_ok(&m, &format!("/api/v1/plugins/{net}/activate")).await;
    let dir = m.stop_keeping_data().await;
    let m = Market::start_in(dir, |c| c.plugins.quarantine_after = 1).await;
    assert_eq!(m.state.registry.active_strategy().digest, net);
    let body = post_ok(&m, "/api/v1/plugins/strategy/rollback").await;
    assert_eq!(body["active_strategy"]["digest"], json!(ppw));

    // 2. The built-in strategy activated explicitly, with a previous version.
    post_ok(&m, "/api/v1/plugins/native:price-per-watt/activate").await;
    let dir = m.stop_keeping_data().await;
    let m = Market::start_in(dir, |c| c.plugins.quarantine_after = 1).await;
    assert_eq!(
        m.state.registry.active_strategy().digest,
        "native:price-per-watt"
    );
    let body = post_ok(&m, "/api/v1/plugins/strategy/rollback").await;
    assert_eq!(body["active_strategy"]["digest"], json!(ppw));

    // 3. A quarantined version stays quarantined, with its reason, and the version it fell
    // back to keeps answering.
    let (_, machine, _) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 1000.0).await;
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/bids",
            Some(&key),
            Some(json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let bad = m.install_and_activate("hostile-strategy", "nan").await;
    m.tick(60).await;
    let (_, health) = m.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(health["strategy_digest"], json!(ppw), "{health}");
    let dir = m.stop_keeping_data().await;
    let m = Market::start_in(dir, |c| c.plugins.quarantine_after = 1).await;
    let (_, health) = m.call("GET", "/api/v1/health", None, None).await;
    assert_eq!(health["active_strategy"]["digest"], json!(bad), "{health}");
    assert_eq!(
        health["strategy_chain"][0]["quarantined"],
        json!(true),
        "{health}"
    );
    assert_eq!(
        health["strategy_digest"],
        json!(ppw),
        "the previous version answers: {health}"
    );
    let state = m.state.registry.state();
    assert_eq!(state.quarantined.len(), 1, "{state:?}");
    assert!(state.quarantined[0].1.contains("score"), "{state:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_version_removes_its_artefact_with_the_last_version_that_owns_it() {
    let m = Market::start(|_| {}).await;
    let cache = m.state.config.data_dir.join("plugin-cache");
    let files = || std::fs::read_dir(&cache).map_or(0, |d| d.count());
    let (_, a) = m.upload_plugin(OPERATOR_KEY, "policy-validator", "").await;
    let (_, b) = m
        .upload_plugin(OPERATOR_KEY, "policy-validator", "image-deny = x/*")
        .await;
    let (a, b) = (
        a["digest"].as_str().unwrap().to_owned(),
        b["digest"].as_str().unwrap().to_owned(),
    );
    assert_eq!(files(), 1, "one component, one artefact");
    // Removing one version keeps the artefact the other still uses.
    let (status, body) = m
        .call(
            "DELETE",
            &format!("/api/v1/plugins/{a}"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["artefacts_removed"], json!(0));
    assert_eq!(files(), 1);
    // A version in use cannot be removed.
    post_ok(&m, &format!("/api/v1/plugins/{b}/activate")).await;
    let (status, body) = m
        .call(
            "DELETE",
            &format!("/api/v1/plugins/{b}"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, _) = m
        .call(
            "DELETE",
            "/api/v1/plugins/validators/policy-validator",
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // The last version of the component takes its artefact with it.
    let (status, body) = m
        .call(
            "DELETE",
            &format!("/api/v1/plugins/{b}"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["artefacts_removed"], json!(1));
    assert_eq!(files(), 0);
    let (status, _) = m
        .call(
            "DELETE",
            &format!("/api/v1/plugins/{b}"),
            Some(OPERATOR_KEY),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_strategy_written_in_python_clears_the_market() {
    // Uploaded and activated through the API as an author's plugin is (17.5 MiB: under
    // the upload limit, MAX_PLUGIN_BYTES, 32 MiB).
    let m = Market::start(|_| {}).await;
    m.install_and_activate("python-strategy", "").await;
    let (_, machine, _) = m.machine_with_gpus(1).await;
    let mut bids = Vec::new();
    // 10 CLORE/day at 400 W (0.025 per W) loses to 8 CLORE/day at 200 W (0.04 per W).
    for (client, price, watts) in [("dear", 10.0, 400), ("frugal", 8.0, 200)] {
        let (_, key) = m.funded_client(client, 1000.0).await;
        let (status, bid) = m
            .call(
                "POST",
                "/api/v1/bids",
                Some(&key),
                Some(json!({"machine": machine, "price": price, "image": "a", "oc": [{"pl": watts}]})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{bid}");
        bids.push((bid["id"].clone(), key));
    }
    m.tick(60).await;

    let (frugal, key) = &bids[1];
    let (status, decision) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/decision"),
            Some(key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert_eq!(decision["winner"]["bid"], *frugal, "{decision}");
    assert_eq!(decision["faults"], json!([]), "{decision}");
    let score = |bid: &Value| {
        decision["verdicts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["bid"] == *bid)
            .unwrap()["verdict"]["Scored"]["score"]
            .as_f64()
    };
    // The scores of the Rust plugin and the native reference: CLORE/day per watt.
    assert_eq!(score(frugal), Some(8.0 / 200.0), "{decision}");
    assert_eq!(score(&bids[0].0), Some(10.0 / 400.0), "{decision}");
    assert!(
        decision.to_string().contains("python-price-per-watt"),
        "the Python version answered: {decision}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_plugin_says_why_in_the_decision_and_the_plugin_list() {
    let m = Market::start(|_| {}).await;
    let (_, machine, _) = m.machine_with_gpus(1).await;
    let (_, key) = m.funded_client("c", 1000.0).await;
    let (status, _) = m
        .call(
            "POST",
            "/api/v1/bids",
            Some(&key),
            Some(json!({"machine": machine, "price": 10.0, "image": "a", "oc": [{"pl": 200}]})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let digest = m.install_and_activate("hostile-strategy", "panic").await;
    m.tick(60).await;

    let (status, decision) = m
        .call(
            "GET",
            &format!("/api/v1/machines/{machine}/decision"),
            Some(&key),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{decision}");
    let fault = &decision["faults"][0];
    assert_eq!(fault["plugin"]["digest"], json!(digest), "{decision}");
    assert_eq!(fault["kind"], json!("panic"), "{decision}");
    let message = fault["message"].as_str().unwrap();
    assert!(
        message.starts_with("plugin panicked at hostile-strategy/src/lib.rs:")
            && message.ends_with("deliberate panic"),
        "{message}"
    );
    assert!(!message.contains("wasi:cli/environment"), "{message}");

    let (_, list) = m
        .call("GET", "/api/v1/plugins", Some(OPERATOR_KEY), None)
        .await;
    let view = list["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["digest"] == json!(digest))
        .unwrap_or_else(|| panic!("{digest} not listed: {list}"));
    assert_eq!(view["faults"]["panic"], json!(1), "{view}");
    assert_eq!(view["last_fault"], fault["message"], "{view}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_authenticated_route_checks_the_credential_before_the_body() {
    let m = Market::start(|_| {}).await;
    let doc: Value = m
        .http
        .get(format!("{}/api/v1/openapi.json", m.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut checked = 0;
    for (path, method, op) in operations(&doc) {
        // Operations anyone may call declare no security or an optional one.
        let security = op["security"].as_array().cloned().unwrap_or_default();
        if security.is_empty()
            || security
                .iter()
                .any(|s| s.as_object().is_some_and(|o| o.is_empty()))
        {
            continue;
        }
        let clore = path.starts_with("/v1/");
        let path = path
            .replace("{id}", "1")
            .replace("{digest}", "sha256:00")
            .replace("{name}", "v");
        for key in [None, Some("gs_not_a_key")] {
            let mut request = m
                .http
                .request(
                    method.to_uppercase().parse().unwrap(),
                    format!("{}{path}", m.base),
                )
                .header("content-type", "application/json")
                .body("{\"not\": json at all");
            if let Some(key) = key {
                request = if clore {
                    request.header("auth", key)
                } else {
                    request.bearer_auth(key)
                };
            }
            let response = request.send().await.unwrap();
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(
                status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {key:?}: {body}"
            );
            if clore {
                assert_eq!(body, json!({"code": 3}), "{method} {path}: {body}");
            } else {
                assert_eq!(body["error"]["field"], json!("Authorization"), "{body}");
            }
            checked += 1;
        }
    }
    assert!(checked > 40, "only {checked} checks");
}
