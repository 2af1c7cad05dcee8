//! The plugin protocol's JSON (docs/drivers/plugin.md): the one request
//! nativeroute writes per run, and the answers it accepts. Fields are
//! camelCase. Unknown fields are ignored in both directions, so either side
//! can grow new ones without breaking the other.

use std::net::IpAddr;

use ipnet::IpNet;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::PluginRouter;
use crate::{Change, ChangeError, ChangeOutcome, ForeignRoute, Route, RouterRoutes};

/// Longest text taken from a plugin into one error message or route detail:
/// what a plugin says ends up in logs, Events and metrics labels' neighbours.
const TEXT_LIMIT: usize = 1000;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Request<'a> {
    op: &'static str,
    router: &'a str,
    pool: &'a [IpNet],
    route_tag: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    changes: Option<Vec<WireChange>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct WireChange {
    action: &'static str,
    dst: IpNet,
    via: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    old_via: Option<IpAddr>,
}

impl From<&Change> for WireChange {
    fn from(change: &Change) -> Self {
        let route = change.route();
        let old_via = match change {
            Change::Replace { old_via, .. } => Some(*old_via),
            Change::Add(_) | Change::Remove(_) => None,
        };
        Self {
            action: change.action().as_str(),
            dst: route.dst,
            via: route.via,
            old_via,
        }
    }
}

/// Addresses stay strings until we parse them ourselves, so that a bad one
/// is named in the error rather than described by a JSON position.
#[derive(Deserialize)]
struct ListAnswer {
    routes: Vec<WireRoute>,
    #[serde(default)]
    foreign: Vec<WireForeign>,
}

#[derive(Deserialize)]
struct WireRoute {
    dst: String,
    via: String,
}

#[derive(Deserialize)]
struct WireForeign {
    dst: String,
    #[serde(default)]
    via: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

#[derive(Deserialize)]
struct ApplyAnswer {
    results: Vec<WireResult>,
}

#[derive(Deserialize)]
struct WireResult {
    ok: bool,
    #[serde(default)]
    error: Option<String>,
}

/// `{"op":"list",…}`: what the plugin owns on its router, and what else it
/// sees in the pool.
pub(super) fn list_request(router: &PluginRouter) -> Result<Vec<u8>, String> {
    encode(router, "list", None)
}

/// `{"op":"apply","changes":[…]}`.
pub(super) fn apply_request(router: &PluginRouter, changes: &[Change]) -> Result<Vec<u8>, String> {
    encode(
        router,
        "apply",
        Some(changes.iter().map(Into::into).collect()),
    )
}

fn encode(
    router: &PluginRouter,
    op: &'static str,
    changes: Option<Vec<WireChange>>,
) -> Result<Vec<u8>, String> {
    let request = Request {
        op,
        router: &router.name,
        pool: &router.ownership.pool,
        route_tag: router.ownership.route_tag,
        changes,
    };
    let mut json = serde_json::to_vec(&request)
        .map_err(|error| format!("cannot write the {op} request: {error}"))?;
    json.push(b'\n');
    Ok(json)
}

/// Reads the answer to a list. Routes outside the pool cannot be
/// nativeroute's, whatever the plugin says: they are left out, with a
/// warning. A destination or next hop that is not an address is an error
/// for the whole answer: a list the controller cannot fully read must not
/// be mistaken for a router that holds fewer routes.
pub(super) fn read_list(stdout: &[u8], router: &PluginRouter) -> Result<RouterRoutes, String> {
    let answer: ListAnswer = decode(stdout, "list")?;
    let in_pool = |dst: &IpNet, what: &str| {
        let inside = router.ownership.in_pool(dst);
        if !inside {
            tracing::warn!(
                router = %router.name,
                %dst,
                "the plugin listed a {what} route outside the pool; ignored"
            );
        }
        inside
    };
    let mut routes = RouterRoutes::default();
    for (index, wire) in answer.routes.iter().enumerate() {
        let where_ = format!("routes[{index}]");
        let dst = destination(&wire.dst, &where_)?;
        let via = next_hop(&wire.via, &where_)?;
        if in_pool(&dst, "owned") {
            routes.owned.push(Route::new(dst, via));
        }
    }
    for (index, wire) in answer.foreign.iter().enumerate() {
        let where_ = format!("foreign[{index}]");
        let dst = destination(&wire.dst, &where_)?;
        let via = match &wire.via {
            Some(via) => Some(next_hop(via, &where_)?),
            None => None,
        };
        if in_pool(&dst, "foreign") {
            routes.foreign.push(ForeignRoute {
                dst,
                via,
                detail: clip(wire.detail.as_deref().unwrap_or_default()),
            });
        }
    }
    routes.owned.sort();
    routes.foreign.sort_by_key(|route| (route.dst, route.via));
    Ok(routes)
}

/// Reads the answer to an apply: exactly one result per change, in order.
pub(super) fn read_results(
    stdout: &[u8],
    changes: &[Change],
) -> Result<Vec<ChangeOutcome>, String> {
    let answer: ApplyAnswer = decode(stdout, "apply")?;
    if answer.results.len() != changes.len() {
        return Err(format!(
            "answered {} results for {} changes (there must be exactly one per change, in order); \
             nothing can be assumed about which took effect",
            answer.results.len(),
            changes.len()
        ));
    }
    Ok(changes
        .iter()
        .zip(answer.results)
        .map(|(change, result)| outcome(change, result))
        .collect())
}

fn outcome(change: &Change, result: WireResult) -> ChangeOutcome {
    if result.ok {
        return Ok(());
    }
    let message = match result.error.as_deref().map(str::trim) {
        Some(message) if !message.is_empty() => clip(message),
        _ => "the plugin refused it without saying why".to_owned(),
    };
    Err(ChangeError::Refused {
        dst: change.route().dst,
        message,
    })
}

fn decode<T: DeserializeOwned>(stdout: &[u8], op: &str) -> Result<T, String> {
    serde_json::from_slice(stdout).map_err(|error| {
        let text = String::from_utf8_lossy(stdout);
        let text = text.trim();
        if text.is_empty() {
            format!("answered nothing on stdout to {op} (expected one JSON object)")
        } else {
            let start: String = text.chars().take(200).collect();
            format!("its answer to {op} is not the expected JSON ({error}); it began: {start:?}")
        }
    })
}

fn destination(text: &str, where_: &str) -> Result<IpNet, String> {
    let dst: IpNet = text
        .parse()
        .map_err(|_| format!("{where_}: dst {text:?} is not a CIDR such as 11.11.1.0/24"))?;
    // A route's destination is a network: 11.11.1.5/24 is either a typo or
    // a plugin that mangles addresses, and matching it against the
    // controller's 11.11.1.0/24 would go wrong either way.
    if dst.trunc() != dst {
        return Err(format!(
            "{where_}: dst {text:?} has host bits set (the network is {})",
            dst.trunc()
        ));
    }
    Ok(dst)
}

fn next_hop(text: &str, where_: &str) -> Result<IpAddr, String> {
    text.parse()
        .map_err(|_| format!("{where_}: via {text:?} is not an IP address"))
}

fn clip(text: &str) -> String {
    match text.char_indices().nth(TEXT_LIMIT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::Ownership;

    fn router() -> PluginRouter {
        PluginRouter {
            name: "lab-plugin".to_owned(),
            command: vec!["/usr/local/bin/plugin".to_owned()],
            timeout: Duration::from_secs(5),
            ownership: Ownership {
                pool: vec!["11.11.0.0/16".parse().expect("a CIDR")],
                netlink_protocol: Ownership::DEFAULT_NETLINK_PROTOCOL,
                route_tag: Ownership::DEFAULT_ROUTE_TAG,
                bgp_community: Ownership::DEFAULT_BGP_COMMUNITY,
            },
        }
    }

    fn route(dst: &str, via: &str) -> Route {
        Route::new(
            dst.parse().expect("a CIDR"),
            via.parse().expect("an address"),
        )
    }

    #[test]
    fn requests_carry_the_routers_context_and_replace_carries_the_old_next_hop() {
        let changes = [
            Change::Add(route("11.11.1.0/24", "192.168.2.1")),
            Change::Replace {
                route: route("11.11.2.0/24", "192.168.2.3"),
                old_via: "192.168.2.2".parse().expect("an address"),
            },
            Change::Remove(route("11.11.4.0/24", "192.168.2.4")),
        ];
        let json = apply_request(&router(), &changes).expect("encodes");
        let value: serde_json::Value = serde_json::from_slice(&json).expect("JSON");
        assert_eq!(
            value,
            serde_json::json!({
                "op": "apply",
                "router": "lab-plugin",
                "pool": ["11.11.0.0/16"],
                "routeTag": 1111,
                "changes": [
                    {"action": "add", "dst": "11.11.1.0/24", "via": "192.168.2.1"},
                    {"action": "replace", "dst": "11.11.2.0/24", "via": "192.168.2.3", "oldVia": "192.168.2.2"},
                    {"action": "remove", "dst": "11.11.4.0/24", "via": "192.168.2.4"},
                ],
            })
        );
        let list = list_request(&router()).expect("encodes");
        let value: serde_json::Value = serde_json::from_slice(&list).expect("JSON");
        assert_eq!(value["op"], "list");
        assert!(value.get("changes").is_none());
    }

    #[test]
    fn list_keeps_pool_routes_and_ignores_unknown_fields_and_routes_outside_the_pool() {
        let answer = br#"{"routes":[{"dst":"11.11.2.0/24","via":"192.168.2.2","metric":5},
            {"dst":"10.9.0.0/16","via":"192.168.2.1"},{"dst":"11.11.1.0/24","via":"192.168.2.1"}],
            "foreign":[{"dst":"11.11.9.0/24","via":null,"detail":"static"},{"dst":"10.1.0.0/16"}],
            "vendor":"acme"}"#;
        let routes = read_list(answer, &router()).expect("a valid answer");
        assert_eq!(
            routes.owned,
            vec![
                route("11.11.1.0/24", "192.168.2.1"),
                route("11.11.2.0/24", "192.168.2.2")
            ]
        );
        assert_eq!(
            routes.foreign,
            vec![ForeignRoute {
                dst: "11.11.9.0/24".parse().expect("a CIDR"),
                via: None,
                detail: "static".to_owned(),
            }]
        );
    }

    #[test]
    fn foreign_is_optional() {
        let routes = read_list(br#"{"routes":[]}"#, &router()).expect("a valid answer");
        assert_eq!(routes, RouterRoutes::default());
    }

    #[test]
    fn a_bad_address_in_a_list_fails_the_whole_list_naming_it() {
        for (answer, named) in [
            (
                r#"{"routes":[{"dst":"11.11.300.0/24","via":"192.168.2.1"}]}"#,
                "11.11.300.0/24",
            ),
            (
                r#"{"routes":[{"dst":"11.11.1.0/24","via":"node-1"}]}"#,
                "node-1",
            ),
            (
                r#"{"routes":[{"dst":"11.11.1.5/24","via":"192.168.2.1"}]}"#,
                "11.11.1.5/24",
            ),
            (
                r#"{"routes":[],"foreign":[{"dst":"11.11.9.0/24","via":"x"}]}"#,
                "\"x\"",
            ),
        ] {
            let error = read_list(answer.as_bytes(), &router()).expect_err(answer);
            assert!(error.contains(named), "{error}");
        }
    }

    #[test]
    fn results_map_to_outcomes_in_order_and_a_refusal_names_its_destination() {
        let changes = [
            Change::Add(route("11.11.1.0/24", "192.168.2.1")),
            Change::Add(route("11.11.2.0/24", "192.168.2.2")),
            Change::Remove(route("11.11.3.0/24", "192.168.2.3")),
        ];
        let answer =
            br#"{"results":[{"ok":true},{"ok":false,"error":" table full\n"},{"ok":false}]}"#;
        let outcomes = read_results(answer, &changes).expect("a valid answer");
        assert_eq!(outcomes[0], Ok(()));
        assert_eq!(
            outcomes[1],
            Err(ChangeError::Refused {
                dst: "11.11.2.0/24".parse().expect("a CIDR"),
                message: "table full".to_owned(),
            })
        );
        assert!(
            matches!(&outcomes[2], Err(ChangeError::Refused { message, .. }) if message.contains("without saying why"))
        );
    }

    #[test]
    fn a_result_count_that_differs_from_the_changes_fails_the_batch() {
        let changes = [Change::Add(route("11.11.1.0/24", "192.168.2.1"))];
        let error = read_results(br#"{"results":[]}"#, &changes).expect_err("no results");
        assert!(error.contains("0 results for 1 changes"), "{error}");
    }

    #[test]
    fn an_answer_that_is_not_json_is_quoted_in_the_error() {
        let error = read_results(b"Segmentation fault", &[]).expect_err("not JSON");
        assert!(error.contains("\"Segmentation fault\""), "{error}");
        let error = read_results(b"  \n", &[]).expect_err("empty");
        assert!(error.contains("answered nothing"), "{error}");
    }

    #[test]
    fn long_text_from_a_plugin_is_clipped() {
        let long = "x".repeat(5000);
        assert_eq!(clip(&long).chars().count(), TEXT_LIMIT + 1);
        assert_eq!(clip("short"), "short");
    }
}
