//! Who the client is and how it reached us. Behind a reverse proxy the peer is
//! the proxy, and the client's address, scheme and host are in `Forwarded`
//! (RFC 7239) or `X-Forwarded-*` headers; those are believed only from a peer
//! in `--trusted-proxies`, and removed from every other request, so nothing
//! after this layer can be misled by them.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use super::AppState;

const FORWARDED: &str = "forwarded";
const X_FORWARDED_FOR: &str = "x-forwarded-for";
const X_FORWARDED_PROTO: &str = "x-forwarded-proto";
const X_FORWARDED_HOST: &str = "x-forwarded-host";

/// The client's address: the peer's, or the one a trusted proxy forwarded.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// A `--trusted-proxies` entry: a network (`10.0.0.0/8`) or one address.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    text.parse::<IpNet>()
        .or_else(|_| text.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| format!("expected an address or a CIDR network, not {text:?}"))
}

/// Middleware: strips forwarding headers from untrusted peers and records the
/// client's address for the layers after it.
pub async fn resolve_client(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let proxies = &state.config.trusted_proxies;
    let client = if is_trusted(proxies, peer.ip()) {
        forwarded_client(request.headers(), proxies).unwrap_or(peer.ip())
    } else {
        let headers = request.headers_mut();
        for name in [
            FORWARDED,
            X_FORWARDED_FOR,
            X_FORWARDED_PROTO,
            X_FORWARDED_HOST,
        ] {
            headers.remove(name);
        }
        peer.ip()
    };
    request.extensions_mut().insert(ClientIp(client));
    next.run(request).await
}

fn is_trusted(proxies: &[IpNet], ip: IpAddr) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    proxies.iter().any(|network| network.contains(&ip))
}

/// The nearest address in the forwarding chain that is not one of our
/// proxies: entries further left were written by whoever the client is.
fn forwarded_client(headers: &HeaderMap, proxies: &[IpNet]) -> Option<IpAddr> {
    let chain: Vec<IpAddr> = if headers.contains_key(FORWARDED) {
        forwarded_params(headers, "for")
            .iter()
            .filter_map(|value| parse_node(value))
            .collect()
    } else {
        headers
            .get_all(X_FORWARDED_FOR)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .filter_map(parse_node)
            .collect()
    };
    chain
        .iter()
        .rev()
        .find(|ip| !is_trusted(proxies, **ip))
        .or(chain.first())
        .copied()
}

/// An address of a `for=` value or an `X-Forwarded-For` entry: `1.2.3.4`,
/// `1.2.3.4:5678`, `[2001:db8::1]:5678`, possibly quoted.
fn parse_node(value: &str) -> Option<IpAddr> {
    let value = value.trim().trim_matches('"');
    if let Ok(ip) = value.parse() {
        return Some(ip);
    }
    if let Some(rest) = value.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok();
    }
    value.parse::<SocketAddr>().ok().map(|addr| addr.ip())
}

/// Every value of parameter `name` in the `Forwarded` headers, in order.
fn forwarded_params(headers: &HeaderMap, name: &str) -> Vec<String> {
    headers
        .get_all(FORWARDED)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split([',', ';']))
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| key.trim().eq_ignore_ascii_case(name))
        .map(|(_, value)| value.trim().trim_matches('"').to_owned())
        .collect()
}

/// The scheme and host the client used, as the nearest trusted proxy says.
/// Only meaningful after [`resolve_client`] removed untrusted headers.
pub fn forwarded_origin(headers: &HeaderMap) -> (Option<String>, Option<String>) {
    let last = |values: Vec<String>| values.into_iter().next_back();
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.rsplit(',').next())
            .map(|value| value.trim().to_owned())
    };
    let proto = last(forwarded_params(headers, "proto")).or_else(|| header(X_FORWARDED_PROTO));
    let host = last(forwarded_params(headers, "host")).or_else(|| header(X_FORWARDED_HOST));
    let proto = proto.filter(|p| p.eq_ignore_ascii_case("http") || p.eq_ignore_ascii_case("https"));
    (proto.map(|p| p.to_ascii_lowercase()), host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| parse_network(n).unwrap()).collect()
    }

    #[test]
    fn parses_networks_and_single_addresses() {
        assert_eq!(
            parse_network("10.0.0.0/8").unwrap().to_string(),
            "10.0.0.0/8"
        );
        assert_eq!(
            parse_network(" 10.1.2.3 ").unwrap().to_string(),
            "10.1.2.3/32"
        );
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert!(parse_network("10.0.0.0/33").is_err());
        assert!(parse_network("proxy.example").is_err());
    }

    #[test]
    fn the_client_is_the_nearest_untrusted_hop() {
        let proxies = nets(&["10.0.0.0/8"]);
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.7")]);
        assert_eq!(
            forwarded_client(&xff, &proxies),
            Some("1.2.3.4".parse().unwrap())
        );
        let rfc = headers(&[(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8::1]:4711\";proto=https, for=10.0.0.7",
        )]);
        assert_eq!(
            forwarded_client(&rfc, &proxies),
            Some("2001:db8::1".parse().unwrap())
        );
        let only_proxies = headers(&[("x-forwarded-for", "10.0.0.1, 10.0.0.2")]);
        assert_eq!(
            forwarded_client(&only_proxies, &proxies),
            Some("10.0.0.1".parse().unwrap())
        );
        assert_eq!(forwarded_client(&HeaderMap::new(), &proxies), None);
    }

    #[test]
    fn origin_from_forwarded_or_x_forwarded() {
        let rfc = headers(&[("forwarded", "for=1.2.3.4;proto=https;host=api.example")]);
        assert_eq!(
            forwarded_origin(&rfc),
            (Some("https".into()), Some("api.example".into()))
        );
        let x = headers(&[
            ("x-forwarded-proto", "HTTPS"),
            ("x-forwarded-host", "a.example"),
        ]);
        assert_eq!(
            forwarded_origin(&x),
            (Some("https".into()), Some("a.example".into()))
        );
        let odd = headers(&[("x-forwarded-proto", "javascript")]);
        assert_eq!(forwarded_origin(&odd), (None, None));
    }
}
